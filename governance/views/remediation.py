"""Enforce mode pages: the policy's Mode + Remediation form with its preview, the status panel on the policy
page (loaded with htmx), and a violation's attempts. Reading: any role; changing: admins."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.utils.functional import cached_property
from django.views import View
from django.views.generic import FormView, TemplateView

from common.exceptions import ApplicationError
from common.views import RoleRequiredMixin, ServiceFormMixin

from ..models import Policy, Violation
from ..remediation import rails as rails_service
from ..remediation import services as remediation
from ..remediation.forms import RemediationForm


def _initial(policy: Policy) -> dict:
    rails = remediation.settings_for(policy)
    return {"mode": policy.mode, **{f: getattr(rails, f) for f in rails_service.FIELDS}}


class RemediationEditView(RoleRequiredMixin, ServiceFormMixin, FormView):
    """GET: the form and what it would queue now. POST with `preview`: the same, for the values typed, nothing
    saved. POST: save (admins)."""

    template_name = "governance/remediation/form.html"
    form_class = RemediationForm

    @cached_property
    def policy(self) -> Policy:  # looked up after the role check (dispatch), so a viewer's POST is a 403
        return get_object_or_404(Policy, pk=self.kwargs["pk"])

    def get_initial(self):
        return _initial(self.policy)

    def form_valid(self, form):
        if "preview" in self.request.POST:
            return self.render_to_response(self.get_context_data(form=form, previewed=True))
        return super().form_valid(form)

    def perform(self, form):
        rails_service.remediation_update(actor=self.request.user, policy=self.policy, data=form.data_for_service())
        mode = Policy.objects.get(pk=self.policy.pk).get_mode_display().lower()
        messages.success(self.request, f"Remediation settings of '{self.policy.name}' saved; mode: {mode}.")
        return redirect(self.policy.get_absolute_url())

    def get_context_data(self, **kwargs):
        policy = self.policy
        preview = remediation.remediation_preview(
            policy_type=policy.policy_type, rules=policy.rules, scope=policy.scope, policy=policy
        )
        return super().get_context_data(
            title=f"Remediation of {policy.name}",
            policy=policy,
            preview=preview,
            status=remediation.status_of(policy),
            **kwargs,
        )


class RemediationPanelView(RoleRequiredMixin, TemplateView):
    """The policy page's remediation part: mode, paused by the breaker, budget used, next window."""

    template_name = "governance/remediation/_panel.html"

    def get_context_data(self, **kwargs):
        policy = get_object_or_404(Policy, pk=self.kwargs["pk"])
        return super().get_context_data(policy=policy, status=remediation.status_of(policy), **kwargs)


class RemediationResumeView(RoleRequiredMixin, View):
    def post(self, request, pk):
        policy = get_object_or_404(Policy, pk=pk)
        try:
            rails_service.remediation_resume(actor=request.user, policy=policy)
            messages.success(request, f"Remediation of '{policy.name}' resumed.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect(policy.get_absolute_url())


class ViolationRemediationView(RoleRequiredMixin, TemplateView):
    """One violation with its remediation attempts and their command runs."""

    template_name = "governance/remediation/violation.html"

    def get_context_data(self, **kwargs):
        from ..api.remediation import attempts_of

        violation = get_object_or_404(Violation.objects.select_related("instance", "policy"), pk=self.kwargs["pk"])
        return super().get_context_data(
            title=f"Violation #{violation.pk}", violation=violation, **attempts_of(violation), **kwargs
        )
