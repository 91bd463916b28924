"""Policy pages: choose a type, create and edit (with mode and the remediation rails), preview, detail, toggle, delete."""

from datetime import timedelta

from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import FormView, TemplateView

from common.choices import Role
from common.exceptions import ApplicationError
from common.forms import style_form
from common.validators import parse_id
from common.views import HtmxPartialMixin, RoleRequiredMixin, ServiceFormMixin, add_service_errors, redirect_next
from fleet.selectors import instances_in_scope

from .. import evaluators, selectors, services
from ..choices import PolicyMode, PolicyType, SnapshotKind, VersionSource
from ..forms import POLICY_FORMS, TYPE_HELP
from ..models import ComplianceSnapshot, Policy, RemediationSettings, Violation
from ..policyfiles.history import versions_with_diffs
from ..remediation import rails as rails_service
from ..remediation.forms import RailsForm
from ..remediation.services import remediation_preview, settings_for
from .lists import _page


class PolicyTypeChooseView(RoleRequiredMixin, TemplateView):
    required_role = Role.ADMIN
    template_name = "governance/policy_type_choose.html"

    def get_context_data(self, **kwargs):
        types = [{"value": t.value, "label": t.label, "help": TYPE_HELP[t]} for t in PolicyType]
        return super().get_context_data(title="Create policy", types=types, **kwargs)


def rails_initial(policy: Policy | None) -> dict:
    rails = settings_for(policy) if policy is not None else RemediationSettings()
    return {f: getattr(rails, f) for f in rails_service.FIELDS}


def rails_checked(rails_form: RailsForm, policy: Policy | None) -> bool:
    """The embedded rails checked as the service will (rails.validate), errors on their fields; writes nothing."""
    if not rails_form.is_valid():
        return False
    try:
        rails_service.validate(rails_form.data_for_service(), settings_for(policy) if policy else RemediationSettings())
    except ApplicationError as exc:
        add_service_errors(rails_form, exc)
        return False
    return True


class _PolicyFormView(RoleRequiredMixin, ServiceFormMixin, FormView):
    """The policy form with its Mode and, for enforce, the remediation rails (the `rails-` fields). Both are
    validated before anything is written; the policy and its rails are then saved in one transaction, so a
    policy is never saved with rails that were refused."""

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

    def get_rails_form(self) -> RailsForm:
        if not hasattr(self, "_rails_form"):
            # No rails fields posted (a client of the old form): the saved rails stay as they are.
            posted = self.request.method == "POST" and any(k.startswith("rails-") for k in self.request.POST)
            self._rails_form = RailsForm(self.request.POST if posted else None, initial=rails_initial(self.policy))
        return self._rails_form

    def enforcing(self, form) -> bool:
        return (form.cleaned_data if form.is_valid() else form.data).get("mode") == PolicyMode.ENFORCE

    def rails_ok(self) -> bool:
        if not hasattr(self, "_rails_ok"):  # once: a second check would add its errors twice
            rails_form = self.get_rails_form()
            self._rails_ok = not rails_form.is_bound or rails_checked(rails_form, self.policy)
        return self._rails_ok

    def form_valid(self, form):
        if self.enforcing(form) and not self.rails_ok():
            return self.form_invalid(form)
        return super().form_valid(form)  # ServiceFormMixin: perform(), a service's refusal on the fields

    def form_invalid(self, form):
        if self.enforcing(form):  # every error at once: the rails' too
            self.rails_ok()
        return super().form_invalid(form)

    def save_rails(self, policy: Policy, form) -> None:
        """Inside perform's transaction: an invalid rail (checked already) would roll the policy back too."""
        if form.cleaned_data["mode"] == PolicyMode.ENFORCE and self.get_rails_form().is_bound:
            rails_service.remediation_update(
                actor=self.request.user, policy=policy, data=self.get_rails_form().data_for_service()
            )

    def get_context_data(self, **kwargs):
        preview_url = reverse("governance:policy_preview", args=[self.policy_type])
        if self.policy is not None:
            preview_url += f"?policy={self.policy.pk}"
        rails_form = style_form(self.get_rails_form())
        return super().get_context_data(
            rails_form=rails_form,
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

    @transaction.atomic
    def perform(self, form):
        d = form.cleaned_data
        policy = services.policy_create(
            actor=self.request.user, policy_type=self.policy_type, source=VersionSource.UI, **_policy_fields(d)
        )
        self.save_rails(policy, form)
        messages.success(self.request, f"Policy '{policy.name}' created; its scope is being evaluated.")
        return redirect(policy.get_absolute_url())


def _policy_fields(cleaned: dict) -> dict:
    """What the create and edit forms hand the policy services."""
    return {key: cleaned[key] for key in ("name", "description", "rules", "scope", "enabled", "mode")}


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

    @transaction.atomic
    def perform(self, form):
        d = form.cleaned_data
        policy = services.policy_update(
            actor=self.request.user, policy=self.policy, source=VersionSource.UI, **_policy_fields(d)
        )
        self.save_rails(policy, form)
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
        if request.POST.get("mode") == PolicyMode.ENFORCE:  # the rails typed, shown before saving
            rails_form = RailsForm(request.POST, initial=rails_initial(policy))
            context.update(enforce=True, rails_form=rails_form, rails_valid=rails_checked(rails_form, policy))
            context["rails"] = rails_form.cleaned_data if context["rails_valid"] else None
        context["policy"] = policy
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
        trend = list(ComplianceSnapshot.objects.filter(kind=SnapshotKind.POLICY, policy=policy).order_by("-date")[:30])
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
            trend=trend[:10],
            trend_chart=policy_trend_chart(trend),
            **kwargs,
        )


def policy_trend_chart(trend: list[ComplianceSnapshot]) -> dict | None:
    """Chart.js config of the policy's daily share of passing instances (newest first in), oldest left;
    None below two days, where a line has nothing to show."""
    points = [s for s in reversed(trend) if s.score is not None]
    if len(points) < 2:
        return None
    return {
        "type": "line",
        "data": {
            "labels": [s.date.isoformat() for s in points],
            "datasets": [{"label": "Passing (%)", "data": [s.score for s in points], "borderColor": "#2563eb"}],
        },
        "options": {"scales": {"y": {"min": 0, "max": 100}}, "plugins": {"legend": {"display": False}}},
    }


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
