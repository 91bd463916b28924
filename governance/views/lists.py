"""The governance lists: one table component each (sortable, filterable, CSV), driven by its FilterSet."""

from django.core.paginator import Paginator
from django.views.generic import ListView

from common.tables import TableListMixin
from common.views import HtmxPartialMixin, RoleRequiredMixin

from .. import selectors
from ..filters import ExceptionFilterSet, InstanceScoreFilterSet, PolicyFilterSet, ViolationFilterSet
from ..models import InstanceCompliance, Policy, PolicyException, Violation
from ..tables import SCORE_SORT, VIOLATION_SORT, ExceptionTable, PolicyTable, ScoreTable, ViolationTable

PAGE_SIZE = 50


def _page(request, queryset, size=PAGE_SIZE):
    return Paginator(queryset, size).get_page(request.GET.get("page"))


class _GovernanceListView(TableListMixin, RoleRequiredMixin, ListView):
    """A governance list: its FilterSet over `model`, then `select(queryset)` (the selector), sorted. A
    filter that is not valid shows its error on the field and the unfiltered list."""

    paginate_by = PAGE_SIZE
    filterset_class = None
    model = None
    title = ""

    def select(self, queryset):  # pragma: no cover - each list implements it
        raise NotImplementedError

    def get_queryset(self):
        self.filterset = self.filterset_class(self.request.GET or None, queryset=self.model.objects.all())
        valid = self.filterset.is_bound and self.filterset.is_valid()
        return self.sorted(self.select(self.filterset.qs if valid else self.model.objects.all()))

    def get_context_data(self, **kwargs):
        return super().get_context_data(title=self.title, filter=self.filterset, **kwargs)


class ScoreListView(_GovernanceListView):
    """Drill-down: every instance's score."""

    template_name = "governance/score_list.html"
    table_class = ScoreTable
    filterset_class = InstanceScoreFilterSet
    model = InstanceCompliance
    title = "Instance compliance scores"
    sort_fields = SCORE_SORT

    def select(self, queryset):
        return selectors.instance_scores(queryset=queryset)


class PolicyListView(_GovernanceListView):
    template_name = "governance/policy_list.html"
    table_class = PolicyTable
    filterset_class = PolicyFilterSet
    model = Policy
    title = "Policies"
    sort_fields = {"name": "name", "type": "policy_type", "open": "open_violations", "enabled": "enabled"}

    def select(self, queryset):
        return selectors.policy_list(queryset=queryset)


class ViolationListView(HtmxPartialMixin, _GovernanceListView):
    template_name = "governance/violation_list.html"
    partial_template_name = "governance/_violation_table.html"
    table_class = ViolationTable
    filterset_class = ViolationFilterSet
    model = Violation
    title = "Violations"
    sort_fields = VIOLATION_SORT

    def select(self, queryset):
        return selectors.violation_list(queryset=queryset)

    def get_context_data(self, **kwargs):
        return super().get_context_data(query=self.request.GET.urlencode(), **kwargs)


class ViolationExportView(ViolationListView):
    """The first export URL (violations/export.csv), kept for bookmarks: the list's ?export=csv."""

    def get(self, request, *args, **kwargs):
        return self.get_table().csv_response(self.get_export_queryset())


class ExceptionListView(_GovernanceListView):
    template_name = "governance/exception_list.html"
    table_class = ExceptionTable
    filterset_class = ExceptionFilterSet
    model = PolicyException
    title = "Exceptions"
    sort_fields = {
        "policy": "policy__name",
        "rule": "rule_key",
        "expires": "expires_at",
        "created_by": "created_by__username",
    }

    def select(self, queryset):
        return selectors.exception_list(queryset=queryset)
