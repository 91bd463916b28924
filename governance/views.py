from datetime import timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import FormView, ListView, TemplateView

from common.choices import Role
from common.exceptions import ApplicationError
from common.tables import TableListMixin
from common.validators import parse_id
from common.views import HtmxPartialMixin, RoleRequiredMixin, ServiceFormMixin, redirect_next
from fleet.models import Group, Instance
from fleet.selectors import instances_in_scope

from . import evaluators, selectors, services
from .choices import PolicyType, SnapshotKind, VersionSource
from .filters import ExceptionFilterSet, InstanceScoreFilterSet, PolicyFilterSet, ViolationFilterSet
from .forms import POLICY_FORMS, TYPE_HELP, ExceptionForm
from .models import ComplianceSnapshot, InstanceCompliance, Policy, PolicyException, Violation
from .policyfiles.history import versions_with_diffs
from .remediation.services import remediation_preview
from .tables import SCORE_SORT, VIOLATION_SORT, ExceptionTable, PolicyTable, ScoreTable, ViolationTable
from .tasks import take_compliance_snapshot

PAGE_SIZE = 50


def _page(request, queryset, size=PAGE_SIZE):
    return Paginator(queryset, size).get_page(request.GET.get("page"))


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


# --- Policies ---------------------------------------------------------------------------------


class PolicyListView(_GovernanceListView):
    template_name = "governance/policy_list.html"
    table_class = PolicyTable
    filterset_class = PolicyFilterSet
    model = Policy
    title = "Policies"
    sort_fields = {"name": "name", "type": "policy_type", "open": "open_violations", "enabled": "enabled"}

    def select(self, queryset):
        return selectors.policy_list(queryset=queryset)


class PolicyTypeChooseView(RoleRequiredMixin, TemplateView):
    required_role = Role.ADMIN
    template_name = "governance/policy_type_choose.html"

    def get_context_data(self, **kwargs):
        types = [{"value": t.value, "label": t.label, "help": TYPE_HELP[t]} for t in PolicyType]
        return super().get_context_data(title="Create policy", types=types, **kwargs)


class _PolicyFormView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "governance/policy_form.html"
    policy: Policy | None = None
    policy_type = ""

    def load(self):  # pragma: no cover - each view implements it
        raise NotImplementedError

    # Objects are looked up only after RoleRequiredMixin.dispatch checked the role (403 before 404).
    def get(self, request, *args, **kwargs):
        self.load()
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        self.load()
        return super().post(request, *args, **kwargs)

    def get_form_class(self):
        return POLICY_FORMS[self.policy_type]

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs["policy"] = self.policy
        return kwargs

    def get_context_data(self, **kwargs):
        preview_url = reverse("governance:policy_preview", args=[self.policy_type])
        if self.policy is not None:
            preview_url += f"?policy={self.policy.pk}"
        return super().get_context_data(
            policy=self.policy,
            policy_type=PolicyType(self.policy_type),
            type_help=TYPE_HELP[self.policy_type],
            preview_url=preview_url,
            **kwargs,
        )


def policy_managed_message(policy: Policy) -> str:
    try:
        services.policy_check_writable(policy)
    except ApplicationError as exc:
        return exc.message
    return ""


class PolicyCreateView(_PolicyFormView):
    def load(self):
        if self.kwargs["policy_type"] not in PolicyType.values:
            raise Http404("Unknown policy type")
        self.policy_type = self.kwargs["policy_type"]

    def get_context_data(self, **kwargs):
        return super().get_context_data(title=f"Create {PolicyType(self.policy_type).label.lower()} policy", **kwargs)

    def perform(self, form):
        d = form.cleaned_data
        policy = services.policy_create(
            actor=self.request.user,
            name=d["name"],
            description=d["description"],
            policy_type=self.policy_type,
            rules=d["rules"],
            scope=d["scope"],
            enabled=d["enabled"],
            source=VersionSource.UI,
        )
        messages.success(self.request, f"Policy '{policy.name}' created; its scope is being evaluated.")
        return redirect(policy.get_absolute_url())


class PolicyEditView(_PolicyFormView):
    def load(self):
        self.policy = get_object_or_404(Policy, pk=self.kwargs["pk"])
        self.policy_type = self.policy.policy_type

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            title=f"Edit {self.policy.name}", managed=policy_managed_message(self.policy), **kwargs
        )

    def post(self, request, *args, **kwargs):
        """A policy a GitOps repository owns is changed there: 409, the page says where it lives."""
        self.load()
        if self.policy.git_repository_id:
            form = self.get_form()
            form.add_error(None, policy_managed_message(self.policy))
            return self.render_to_response(self.get_context_data(form=form), status=409)
        return super().post(request, *args, **kwargs)

    def perform(self, form):
        d = form.cleaned_data
        policy = services.policy_update(
            actor=self.request.user,
            policy=self.policy,
            name=d["name"],
            description=d["description"],
            rules=d["rules"],
            scope=d["scope"],
            enabled=d["enabled"],
            source=VersionSource.UI,
        )
        messages.success(self.request, f"Policy '{policy.name}' saved; its old and new scope are being re-evaluated.")
        return redirect(policy.get_absolute_url())


class PolicyPreviewView(RoleRequiredMixin, View):
    """htmx: the would-be result of the form's policy, without saving. Writes nothing."""

    def post(self, request, policy_type):
        if policy_type not in PolicyType.values:
            raise Http404("Unknown policy type")
        policy_id = parse_id(request.GET.get("policy"))
        policy = Policy.objects.filter(pk=policy_id).first() if policy_id else None
        form = POLICY_FORMS[policy_type](request.POST, policy=policy)
        context = {"form": form}
        if form.is_valid():
            d = form.cleaned_data
            try:
                context["preview"] = services.policy_preview(
                    policy_type=policy_type,
                    rules=d["rules"],
                    scope=d["scope"],
                    exclude_id=policy.pk if policy else None,
                )
                context["remediation"] = remediation_preview(  # what enforce mode would queue (#16)
                    policy_type=policy_type, rules=context["preview"]["rules"], scope=d["scope"], policy=policy
                )
            except ApplicationError as exc:
                context["error"] = exc.message
        return render(request, "governance/_preview.html", context)


# After a save the page keeps refreshing this long even when the figures already add up: an edit's
# re-evaluation may leave the counts as they were while violations change.
EVALUATION_GRACE = timedelta(seconds=20)


def evaluation_pending(policy: Policy, compliance, *, now=None) -> bool:
    """Whether the policy's scope is (probably) still being evaluated after a save: the evaluation runs in
    a worker and leaves no marker, so the page goes by what it can see. Recently saved, or enabled with no
    instance counted yet while its scope holds some, is pending."""
    if not policy.enabled:
        return False
    if (now or timezone.now()) - policy.updated < EVALUATION_GRACE:
        return True
    counted = sum(getattr(compliance, f, 0) or 0 for f in ("compliant", "noncompliant", "exempt", "unknown"))
    return counted == 0 and instances_in_scope(policy.scope).exists()


class PolicyDetailView(RoleRequiredMixin, HtmxPartialMixin, TemplateView):
    """The policy, its figures and current violations; the live part refreshes while evaluation is pending."""

    template_name = "governance/policy_detail.html"
    partial_template_name = "governance/_policy_live.html"

    def get_context_data(self, **kwargs):
        policy = get_object_or_404(selectors.policy_list(), pk=self.kwargs["pk"])
        violations = selectors.violation_list(
            queryset=Violation.objects.filter(policy=policy, status__in=("open", "exempted"))
        )
        compliance = getattr(policy, "compliance", None)
        return super().get_context_data(
            title=policy.name,
            policy=policy,
            compliance=compliance,
            evaluating=evaluation_pending(policy, compliance),
            rules=evaluators.rule_keys(policy.policy_type, policy.rules),
            page_obj=_page(self.request, violations),
            timeliness=selectors.update_rule_timeliness(policy),
            exceptions=selectors.exception_list(
                queryset=policy.exceptions.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())
            ),
            versions=versions_with_diffs(policy),
            trend=ComplianceSnapshot.objects.filter(kind=SnapshotKind.POLICY, policy=policy).order_by("-date")[:30],
            **kwargs,
        )


class PolicyToggleView(RoleRequiredMixin, View):
    def post(self, request, pk):
        policy = get_object_or_404(Policy, pk=pk)
        try:
            if policy.enabled:
                services.policy_disable(actor=request.user, policy=policy, source=VersionSource.UI)
                messages.success(request, f"Policy '{policy.name}' disabled; its violations will be resolved.")
            else:
                services.policy_enable(actor=request.user, policy=policy, source=VersionSource.UI)
                messages.success(request, f"Policy '{policy.name}' enabled; its scope is being evaluated.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect_next(request, policy.get_absolute_url())


class PolicyDeleteView(RoleRequiredMixin, View):
    def post(self, request, pk):
        policy = get_object_or_404(Policy, pk=pk)
        name = policy.name
        try:
            services.policy_delete(actor=request.user, policy=policy, source=VersionSource.UI)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect(policy.get_absolute_url())
        messages.success(request, f"Policy '{name}' deleted; its violations are kept as resolved history.")
        return redirect("governance:policy_list")


# --- Violations -------------------------------------------------------------------------------


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


# --- Exceptions -------------------------------------------------------------------------------


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


class ExceptionCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "governance/exception_form.html"
    form_class = ExceptionForm

    def get_initial(self):
        initial = super().get_initial()
        for key in ("policy", "rule_key"):
            if self.request.GET.get(key):
                initial[key] = self.request.GET[key]
        if instance_id := parse_id(self.request.GET.get("instance")):
            instance = Instance.objects.filter(pk=instance_id).first()
            if instance:
                initial.update(scope_kind="instances", scope_instances=[instance])
        return initial

    def get_context_data(self, **kwargs):
        return super().get_context_data(title="Create exception", rule_choices=selectors.rule_choices(), **kwargs)

    def perform(self, form):
        d = form.cleaned_data
        exception = services.exception_create(
            actor=self.request.user,
            policy=d["policy"],
            rule_key=d["rule_key"].strip(),
            scope=d["scope"],
            justification=d["justification"],
            expires_at=d["expires_at"],
        )
        messages.success(self.request, f"{exception} created until {exception.expires_at:%Y-%m-%d %H:%M}.")
        return redirect("governance:exception_list")


class ExceptionRevokeView(RoleRequiredMixin, View):
    def post(self, request, pk):
        exception = get_object_or_404(PolicyException, pk=pk)
        try:
            services.exception_revoke(actor=request.user, exception=exception)
            messages.success(request, f"{exception} revoked; its violations re-open if still failing.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect("governance:exception_list")


# --- Panels loaded by fleet pages -------------------------------------------------------------


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
