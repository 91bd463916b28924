"""The fleet dashboard, and the panels other apps add to fleet pages."""

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.views.generic import TemplateView

from common import versions
from common.views import HtmxPartialMixin, RoleRequiredMixin
from fleet import selectors


def panel_urls(names, *args) -> list[str]:
    """URLs of the panels other apps add to a fleet page; a panel whose app is not installed is skipped."""
    urls = []
    for name in names:
        try:
            urls.append(reverse(name, args=args))
        except NoReverseMatch:
            continue
    return urls


def status_chart(summary: dict) -> dict:
    return {
        "type": "doughnut",
        "data": {
            "labels": ["Online", "Offline", "Pending"],
            "datasets": [
                {
                    "data": [summary["online"], summary["offline"], summary["pending"]],
                    "backgroundColor": ["#16a34a", "#dc2626", "#d97706"],
                }
            ],
        },
        "options": {"plugins": {"legend": {"position": "bottom"}}, "cutout": "60%"},
    }


def os_chart(counts: list[tuple[str, int]]) -> dict:
    """Bars of the given OS versions in version order (22.04 before 24.04, not by count); versions that
    do not parse ("unknown") last."""
    counts = sorted(counts, key=lambda c: (not versions.is_valid(c[0]), versions.parse(c[0]), c[0]))
    return {
        "type": "bar",
        "data": {
            "labels": [name for name, _ in counts],
            "datasets": [{"label": "Servers", "data": [n for _, n in counts], "backgroundColor": "#2563eb"}],
        },
        "options": {
            "plugins": {"legend": {"display": False}},
            "scales": {
                "x": {"title": {"display": True, "text": "OS version"}},
                "y": {"beginAtZero": True, "ticks": {"precision": 0}, "title": {"display": True, "text": "servers"}},
            },
        },
    }


# --- Dashboard ---------------------------------------------------------------------------------


class DashboardView(HtmxPartialMixin, RoleRequiredMixin, TemplateView):
    template_name = "fleet/dashboard.html"
    partial_template_name = "fleet/_dashboard_live.html"

    def get_context_data(self, **kwargs):
        summary = selectors.fleet_summary()
        os_counts = selectors.os_version_counts()
        return super().get_context_data(
            summary=summary,
            recent_commands=selectors.command_list().order_by("-created", "-id")[:8],
            recently_offline=selectors.instances_recently_offline(),
            servers=selectors.instances_needing_attention_first(limit=10),
            status_chart=status_chart(summary),
            os_chart=os_chart(os_counts[:12]),
            has_instances=summary["total"] > 0,
            panels=panel_urls(getattr(settings, "FLEET_DASHBOARD_PANELS", [])),
            **kwargs,
        )
