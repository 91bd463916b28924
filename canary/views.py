from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import FormView, TemplateView, View

from common.choices import Role
from common.exceptions import ApplicationError
from common.views import RoleRequiredMixin, ServiceFormMixin
from fleet.mixins import FeatureRequiredMixin

from . import selectors, services
from .choices import Phase
from .forms import CanaryForm, RollbackForm
from .models import CanaryDeployment


class CanaryViewMixin(FeatureRequiredMixin, RoleRequiredMixin):
    license_feature = services.FEATURE
    write_role = Role.OPERATOR


class CanaryListView(CanaryViewMixin, TemplateView):
    template_name = "canary/list.html"

    def get_template_names(self):
        if self.request.headers.get("HX-Request") and self.request.GET.get("partial") == "rows":
            return ["canary/_list_rows.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        qs = selectors.canary_list()
        phase = self.request.GET.get("phase")
        if phase in Phase.values:
            qs = qs.filter(phase=phase)
        page = Paginator(qs, 25).get_page(self.request.GET.get("page"))
        context.update(
            page_obj=page, deployments=page.object_list, phases=Phase.choices, phase=phase, title="Canary deployments"
        )
        return context


class CanaryCreateView(CanaryViewMixin, ServiceFormMixin, FormView):
    template_name = "canary/create.html"
    form_class = CanaryForm
    required_role = Role.OPERATOR

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "unavailable": selectors.criteria_available()}

    def perform(self, form):
        deployment = services.canary_create(actor=self.request.user, **form.service_kwargs())
        messages.success(self.request, f"{deployment} started: the change was sent to the canary instances.")
        return redirect(deployment.get_absolute_url())


class CanaryPreviewView(CanaryViewMixin, TemplateView):
    """htmx: the canary and rollout sets the form would produce, with the pre-flight result."""

    template_name = "canary/_preview.html"
    required_role = Role.OPERATOR

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = CanaryForm(self.request.GET, unavailable=selectors.criteria_available())
        form.is_valid()
        data = form.cleaned_data
        error = ""
        plan = None
        if "scope" not in data:
            error = "Choose a valid scope to see the canary and rollout sets."
        else:
            try:
                plan = services.canary_plan(
                    scope=data["scope"],
                    selection=data.get("selection") or "percentage",
                    percentage=data.get("canary_percentage"),
                    instances=list(data.get("canary_instances") or ()),
                    criteria=data.get("criteria") or (),
                    health_path=data.get("health_path") or "/health",
                    preflight_policy=data.get("preflight_policy") or "exclude",
                )
            except ApplicationError as exc:
                error = exc.message
        context.update(plan=plan, error=error)
        return context


class CanaryDetailView(CanaryViewMixin, TemplateView):
    template_name = "canary/detail.html"

    def get_template_names(self):
        if self.request.headers.get("HX-Request") and self.request.GET.get("partial") == "live":
            return ["canary/_live.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        try:
            deployment = selectors.canary_get(self.kwargs["pk"])
        except CanaryDeployment.DoesNotExist:
            from django.http import Http404

            raise Http404("No such canary deployment") from None
        status = selectors.canary_status(deployment)
        context.update(
            deployment=deployment,
            status=status,
            title=str(deployment),
            timeline=selectors.canary_timeline(deployment, status["canary"]),
            chart=selectors.share_chart(deployment, status["rounds"]),
            can_promote=deployment.phase in (Phase.CANARY, Phase.EVALUATION),
            can_rollback=deployment.phase in (Phase.CANARY, Phase.EVALUATION),
            rollback_form=RollbackForm(),
        )
        return context

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        if self.request.headers.get("HX-Request") and not context["deployment"].is_active:
            response.status_code = 286  # htmx: swap this last update, then stop polling
        return response


class CanaryActionView(CanaryViewMixin, View):
    """POST promote / rollback: call the service; a refused transition becomes a flash message."""

    action = ""
    http_method_names = ["post"]

    def post(self, request, pk):
        deployment = get_object_or_404(CanaryDeployment, pk=pk)
        try:
            if self.action == "promote":
                services.canary_promote(actor=request.user, deployment=deployment)
                messages.success(request, f"{deployment} promoted: the change is being sent to the rest of the scope.")
            else:
                form = RollbackForm(request.POST)
                reason = form.cleaned_data["reason"] if form.is_valid() else ""
                services.canary_rollback(actor=request.user, deployment=deployment, reason=reason)
                messages.warning(
                    request, f"{deployment} is rolling back: the change is being reverted on the canary instances."
                )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect(deployment.get_absolute_url())
