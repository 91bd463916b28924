"""The governance dashboard and the panels fleet pages load (server page, fleet dashboard)."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.generic import TemplateView

from common.validators import parse_id
from common.views import HtmxPartialMixin, RoleRequiredMixin
from fleet.models import Group, Instance

from .. import selectors
from ..choices import SnapshotKind
from ..models import ComplianceSnapshot
from ..tasks import take_compliance_snapshot


def _dashboard_filters(request) -> tuple[Group | None, str]:
    group_id = parse_id(request.GET.get("group"))
    group = Group.objects.filter(pk=group_id).first() if group_id else None
    return group, request.GET.get("tag", "").strip()


def ensure_todays_snapshot() -> bool:
    """The trend starts the day the panel starts, not at the first midnight: the first dashboard load of a
    day without a snapshot queues one (the daily beat task keeps doing the rest). Queued, not taken here:
    a page view writes nothing, and two loads at once only queue two runs, each replacing the day.
    Returns whether one was queued."""
    if ComplianceSnapshot.objects.filter(date=timezone.localdate(), kind=SnapshotKind.FLEET).exists():
        return False
    transaction.on_commit(take_compliance_snapshot.delay)
    return True


class DashboardView(RoleRequiredMixin, HtmxPartialMixin, TemplateView):
    """Governance dashboard; htmx refreshes its live part every few seconds."""

    template_name = "governance/dashboard.html"
    partial_template_name = "governance/_dashboard_body.html"

    def get_context_data(self, **kwargs):
        if not self.is_htmx:  # the page, not its 10-second refreshes
            ensure_todays_snapshot()
        group, tag = _dashboard_filters(self.request)
        counts = selectors.violation_counts(group=group, tag=tag)
        return super().get_context_data(
            title="Governance",
            groups=Group.objects.all(),
            group=group,
            tag=tag,
            fleet=selectors.fleet_compliance(group=group, tag=tag),
            counts=counts,
            top_policies=selectors.top_failing_policies(group=group, tag=tag),
            lowest=selectors.lowest_scoring_instances(group=group, tag=tag),
            group_scores=selectors.group_scores() if group is None and not tag else [],
            trend_chart=selectors.trend_chart(),
            severity_chart=selectors.severity_chart(counts),
            query=self.request.GET.urlencode(),
            **kwargs,
        )


class ServerPanelView(RoleRequiredMixin, TemplateView):
    """htmx fragment for the server detail page: score, open violations, history, exceptions."""

    template_name = "governance/panels/server.html"

    def get_context_data(self, **kwargs):
        instance = get_object_or_404(Instance, pk=self.kwargs["pk"])
        return super().get_context_data(**selectors.instance_panel(instance), **kwargs)


class FleetCompliancePanelView(RoleRequiredMixin, TemplateView):
    """htmx fragment for the Fleet Dashboard: the average compliance score and a small breakdown."""

    template_name = "governance/panels/fleet_compliance.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            fleet=selectors.fleet_compliance(), counts=selectors.violation_counts(), **kwargs
        )
