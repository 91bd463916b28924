"""Operations: the command queue, its runs and reverts."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import DetailView, FormView, ListView, TemplateView

from common.choices import Role
from common.exceptions import ApplicationError
from common.tables import TableListMixin
from common.validators import parse_id
from common.views import HtmxPartialMixin, RoleRequiredMixin, ServiceActionView, ServiceFormMixin
from fleet import selectors, services
from fleet.choices import FINISHED_RUN_STATUSES, RunStatus
from fleet.commands import describe
from fleet.filters import CommandFilterSet
from fleet.forms import CommandForm, ScopeForm
from fleet.models import Command, CommandRun
from fleet.tables import CommandTable

PREVIEW_NAMES = 10


# --- Operations: the command queue -------------------------------------------------------------


class CommandListView(HtmxPartialMixin, TableListMixin, RoleRequiredMixin, ListView):
    template_name = "fleet/command_list.html"
    partial_template_name = "fleet/_command_rows.html"
    table_class = CommandTable
    context_object_name = "commands"
    paginate_by = 25
    sort_fields = {"id": "id", "kind": "kind", "source": "source", "runs": "run_total", "created": "created"}

    def get_queryset(self):
        self.filterset = CommandFilterSet(self.request.GET or None, queryset=Command.objects.all())
        # Filter by id so the run counts cover all of a command's runs, not only the filtered instance's.
        matching = Command.objects.filter(pk__in=self.filterset.qs.values("pk"))
        # Aggregating queries ignore Meta.ordering: order explicitly (newest first).
        return self.sorted(selectors.command_list(queryset=matching).order_by("-created", "-id"))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(filter=self.filterset, **kwargs)
        # Rows with runs under way refresh every 3 s; a settled page every 30 s (new commands still arrive).
        context["busy"] = any(c.run_pending or c.run_running for c in context["commands"])
        return context


class CommandCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.OPERATOR
    write_role = Role.OPERATOR
    template_name = "fleet/command_form.html"
    form_class = CommandForm

    def get_initial(self):
        initial = super().get_initial()
        # "Send command" from a server or group page preselects it as the target.
        instance_id, group_id = parse_id(self.request.GET.get("instance")), parse_id(self.request.GET.get("group"))
        if instance_id:
            initial.update(scope_kind="instances", scope_instances=[instance_id])
        elif group_id:
            initial.update(scope_kind="groups", scope_groups=[group_id])
        return initial

    def perform(self, form):
        data = form.cleaned_data
        command = services.command_create(
            actor=self.request.user,
            kind=data["kind"],
            params=form.command_params(),
            scope=data["scope"],
            description=data["description"],
        )
        runs = command.runs.count()
        messages.success(self.request, f"Command queued: {command} on {runs} instance{'s' if runs != 1 else ''}.")
        return redirect(command)


class TargetPreviewView(RoleRequiredMixin, TemplateView):
    """htmx: which instances the target picker currently matches (count and the first names)."""

    template_name = "fleet/_target_preview.html"

    def get_context_data(self, **kwargs):
        form = ScopeForm(self.request.GET)
        context = super().get_context_data(**kwargs)
        if not form.is_valid():
            errors = [e for field_errors in form.errors.values() for e in field_errors]
            return {**context, "errors": errors}
        matched = selectors.instances_in_scope(form.cleaned_data["scope"]).order_by("name")
        count = matched.count()
        names = list(matched.values_list("name", flat=True)[:PREVIEW_NAMES])
        return {**context, "count": count, "names": names, "more": max(0, count - len(names))}


class CommandDetailView(HtmxPartialMixin, RoleRequiredMixin, DetailView):
    template_name = "fleet/command_detail.html"
    partial_template_name = "fleet/_command_runs.html"
    context_object_name = "command"

    def get_queryset(self):
        return selectors.command_list().select_related("inverse_of")

    def get_context_data(self, **kwargs):
        command = self.object
        runs = list(selectors.command_runs_for_command(command))
        unfinished = any(r.status not in FINISHED_RUN_STATUSES for r in runs)
        return super().get_context_data(runs=runs, unfinished=unfinished, **kwargs)


class RunDetailView(RoleRequiredMixin, DetailView):
    template_name = "fleet/run_detail.html"
    context_object_name = "run"

    def get_queryset(self):
        return CommandRun.objects.select_related("command", "instance").filter(command_id=self.kwargs["command_pk"])

    def get_context_data(self, **kwargs):
        run = self.object
        inverse = run.inverse()
        return super().get_context_data(
            inverse_text=describe(*inverse) if inverse else "",
            revertable=inverse is not None and run.status == RunStatus.COMPLETED,
            unfinished=run.status not in FINISHED_RUN_STATUSES,
            **kwargs,
        )


class RunRevertView(ServiceActionView):
    required_role = write_role = Role.OPERATOR
    danger = False
    confirm_title = "Revert this change"
    confirm_button = "Queue the revert"
    confirm_text = "Queue the inverse of this run on {obj.instance.name}? Only this change is undone; nothing else."

    def get_object(self):
        return get_object_or_404(
            CommandRun.objects.select_related("command", "instance"),
            pk=self.kwargs["pk"],
            command_id=self.kwargs["command_pk"],
        )

    def get_cancel_url(self, obj):
        return reverse("fleet:run_detail", args=[obj.command_id, obj.pk])

    def act(self, run):
        revert = services.command_run_revert(actor=self.request.user, run=run, require_completed=True)
        if revert is None:
            raise ApplicationError("This run changed nothing that can be reverted (for example a restart).")
        messages.success(self.request, f"Revert queued: {revert} on {run.instance.name}.")
        return redirect(revert)
