"""The compliance report page: per policy or per group, over a date range (any role)."""

from django.views.generic import TemplateView

from common.exceptions import ApplicationError
from common.views import RoleRequiredMixin

from ..reports.compliance import compliance_report, parse_range
from ..services.snapshots import snapshot_day


class ComplianceReportView(RoleRequiredMixin, TemplateView):
    template_name = "governance/reports/compliance.html"

    def get_context_data(self, **kwargs):
        q = self.request.GET
        today = snapshot_day()
        errors, rows = {}, []
        try:
            kind, start, end = parse_range(q.get("kind"), q.get("start"), q.get("end"), today=today)
            rows = compliance_report(kind=kind, start=start, end=end)
        except ApplicationError as exc:
            errors = exc.errors
            kind, start, end = q.get("kind") or "policy", q.get("start") or "", q.get("end") or ""
        dates = sorted({d["date"] for r in rows for d in r.days})
        grid = [(r, [next((d["score"] for d in r.days if d["date"] == day), None) for day in dates]) for r in rows]
        return super().get_context_data(
            title="Compliance report", kind=kind, start=start, end=end, rows=grid, dates=dates, errors=errors, **kwargs
        )
