from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.generic import FormView, ListView, TemplateView, View

from common.exceptions import ApplicationError
from common.tables import TableListMixin
from common.views import RoleRequiredMixin, ServiceFormMixin, add_service_errors
from fleet.choices import FINISHED_RUN_STATUSES
from fleet.licensing_store import feature_refusal
from fleet.mixins import FeatureRequiredMixin

from . import evaluation, selectors, services
from .choices import Phase
from .filters import HealthPollFilter
from .forms import CanaryForm, ReasonForm, form_errors
from .models import CanaryDeployment
from .tables import CanaryTable


class CanaryViewMixin(RoleRequiredMixin):
    """Reading a deployment, and stopping one (rollback, pause), never needs the license: after a
    downgrade nothing is left running that nobody may see or stop. Starting and moving on do."""

    write_role = services.ACT_ROLE


class LicensedCanaryViewMixin(FeatureRequiredMixin, CanaryViewMixin):
    license_feature = services.FEATURE


class CanaryListView(TableListMixin, CanaryViewMixin, ListView):
    template_name = "canary/list.html"
    table_class = CanaryTable
    context_object_name = "deployments"
    paginate_by = 25
    sort_fields = {
        "id": "id",
        "phase": "phase",
        "canary": "canary_count",
        "reached": "reached_count",
        "started": "started_at",
    }

    def get(self, request, *args, **kwargs):
        upgrade = feature_refusal(services.FEATURE)
        if upgrade and not CanaryDeployment.objects.exists():
            return render(request, "fleet/upgrade.html", {"upgrade": upgrade}, status=402)
        return super().get(request, *args, **kwargs)

    def get_template_names(self):
        if self.request.headers.get("HX-Request") and self.request.GET.get("partial") == "rows":
            return ["canary/_list_rows.html"]
        return [self.template_name]

    @property
    def phase(self) -> str | None:
        phase = self.request.GET.get("phase")
        return phase if phase in Phase.values else None

    def get_queryset(self):
        qs = selectors.canary_list()
        return self.sorted(qs.filter(phase=self.phase) if self.phase else qs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            phases=Phase.choices,
            phase=self.phase,
            filtered=self.phase is not None,
            title="Canary deployments",
            upgrade=feature_refusal(services.FEATURE),
            **kwargs,
        )


class CanaryCreateView(LicensedCanaryViewMixin, ServiceFormMixin, FormView):
    template_name = "canary/create.html"
    form_class = CanaryForm
    required_role = services.ACT_ROLE

    def form_valid(self, form):
        try:
            return self.perform(form)
        except ApplicationError as exc:
            add_service_errors(form, ApplicationError(exc.message, errors=form_errors(exc.errors)))
            return self.form_invalid(form)

    def perform(self, form):
        deployment = services.canary_create(actor=self.request.user, **form.service_kwargs())
        messages.success(self.request, f"{deployment} started: the change was sent to the canary instances.")
        return redirect(deployment.get_absolute_url())


class CanaryPreviewView(LicensedCanaryViewMixin, TemplateView):
    """htmx: the sets the form would produce. Status and apps only, on every change of the form; health
    probes only when the person asks ("Check health now", `probe=1`), never on keystrokes."""

    template_name = "canary/_preview.html"
    required_role = services.ACT_ROLE

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = CanaryForm(self.request.GET)
        form.is_valid()
        data = form.cleaned_data
        probe = self.request.GET.get("probe") == "1"
        error, plan = "", None
        if "scope" not in data:
            error = "Choose a valid scope to see the canary and rollout sets."
        else:
            try:
                plan = services.canary_plan(
                    scope=data["scope"],
                    steps=_preview_steps(data),
                    kind=data.get("command_kind") or "update_app",
                    params=data.get("params") or {},
                    criteria=data.get("criteria") or (),
                    health_path=data.get("health_check_url") or "/health",
                    preflight_policy=data.get("preflight") or "exclude",
                    missing_app_policy=data.get("missing_app") or "exclude",
                    probe=probe,
                )
            except ApplicationError as exc:
                error = exc.message
        context.update(plan=plan, error=error, probed=probe)
        return context


def _preview_steps(data) -> list:
    first = (
        evaluation.Step(instances=tuple(i.pk for i in data.get("canary_instances") or ()))
        if data.get("selection") == "instances"
        else evaluation.Step(percentage=max(1, min(100, data.get("canary_percentage") or 10)))
    )
    return [first] + [evaluation.Step(percentage=p) for p in data.get("further") or () if 1 <= p <= 100]


def deployment_settled(deployment, status) -> bool:
    """Nothing on the page can change any more: the deployment ended and every command run it shows
    (rollout waves, reverts) finished. Until then the live part keeps refreshing."""
    if deployment.is_active:
        return False
    progress = status.get("rollout_progress") or {}
    if any(progress.get(k) for k in ("pending", "running", "waiting")):
        return False
    for row in status.get("instances") or ():
        revert = row["target"].revert_command
        if revert is not None and any(r.status not in FINISHED_RUN_STATUSES for r in revert.runs.all()):
            return False
    return True


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
            raise Http404("No such canary deployment") from None
        status = selectors.canary_status(deployment)
        licensed = feature_refusal(services.FEATURE) is None
        allowed = evaluation.allowed_actions(
            phase=deployment.phase,
            paused=deployment.paused,
            awaiting_approval=deployment.awaiting_approval,
            licensed=licensed,
        )
        context.update(
            deployment=deployment,
            status=status,
            title=str(deployment),
            timeline=selectors.canary_timeline(deployment, status["reached"]),
            chart=selectors.share_chart(deployment, status["rounds"]),
            allowed=allowed,
            licensed=licensed,
            reason_form=ReasonForm(),
            settled=deployment_settled(deployment, status),
        )
        return context

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        if self.request.headers.get("HX-Request") and context["settled"]:
            response.status_code = 286  # htmx: swap this last update, then stop polling
        return response


class CanaryPollsView(CanaryViewMixin, TemplateView):
    """htmx: the poll history of a deployment, filtered by instance, round and verdict, paginated."""

    template_name = "canary/_polls.html"
    PICKER_LIMIT = 200

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        deployment = get_object_or_404(CanaryDeployment, pk=self.kwargs["pk"])
        found = HealthPollFilter(self.request.GET, queryset=selectors.canary_polls(deployment))
        polls = found.qs if found.is_valid() else selectors.canary_polls(deployment).none()
        page = Paginator(polls, 50).get_page(self.request.GET.get("page"))
        reached = deployment.targets.filter(step__isnull=False).select_related("instance").order_by("instance__name")
        context.update(
            deployment=deployment,
            filter=found,
            page_obj=page,
            polls=page.object_list,
            reached=reached[: self.PICKER_LIMIT],  # past this, the instance id box filters (a picker would be huge)
        )
        return context


class CanaryActionView(CanaryViewMixin, View):
    """POST promote / rollback / approve / pause / resume: call the service; a refusal becomes a flash message."""

    action = ""
    http_method_names = ["post"]
    DONE = {
        "promote": ("success", "{d} promoted: the change is being sent to the rest of the scope."),
        "rollback": ("warning", "{d} is rolling back: the change is being reverted on every instance it reached."),
        "approve": ("success", "{d}: the next step was approved and is starting."),
        "pause": ("warning", "{d} is paused: no further instance gets the change until you resume it."),
        "resume": ("success", "{d} resumed."),
    }

    def post(self, request, pk):
        deployment = get_object_or_404(CanaryDeployment, pk=pk)
        form = ReasonForm(request.POST)
        reason = form.cleaned_data["reason"] if form.is_valid() else ""
        calls = {
            "promote": lambda: services.canary_promote(actor=request.user, deployment=deployment),
            "rollback": lambda: services.canary_rollback(actor=request.user, deployment=deployment, reason=reason),
            "approve": lambda: services.canary_approve(actor=request.user, deployment=deployment),
            "pause": lambda: services.canary_pause(actor=request.user, deployment=deployment, reason=reason),
            "resume": lambda: services.canary_resume(actor=request.user, deployment=deployment),
        }
        try:
            calls[self.action]()
        except ApplicationError as exc:  # a refused transition, or the license (UpgradeRequired)
            messages.error(request, exc.message)
        else:
            level, text = self.DONE[self.action]
            getattr(messages, level)(request, text.format(d=deployment))
        return redirect(deployment.get_absolute_url())
