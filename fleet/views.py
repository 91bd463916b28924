"""Fleet pages. Every write goes through a service (which audit-logs); shared reads go through selectors
and the FilterSets the API uses too."""

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse, reverse_lazy
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from django.views.generic import DetailView, FormView, ListView, TemplateView

from common.choices import Role
from common.exceptions import ApplicationError
from common.views import HtmxPartialMixin, RoleRequiredMixin, ServiceActionView, ServiceFormMixin

from . import selectors, services
from .choices import FINISHED_RUN_STATUSES, RunStatus
from .commands import describe
from .filters import CommandFilterSet, InstanceFilterSet
from .forms import CommandForm, GroupForm, InstanceEditForm, LicenseUploadForm, RegistrationTokenForm, ScopeForm
from .licensing import FEATURES
from .licensing_store import current_license_status
from .models import Command, CommandRun, Group, Instance, License, RegistrationToken

PREVIEW_NAMES = 10
APPS_PER_PAGE = 50
UPDATES_SHOWN = 100


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
    return {
        "type": "bar",
        "data": {
            "labels": [name for name, _ in counts],
            "datasets": [{"label": "Instances", "data": [n for _, n in counts], "backgroundColor": "#2563eb"}],
        },
        "options": {
            "plugins": {"legend": {"display": False}},
            "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
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


# --- Servers -----------------------------------------------------------------------------------


class ServerListView(HtmxPartialMixin, RoleRequiredMixin, ListView):
    template_name = "fleet/server_list.html"
    partial_template_name = "fleet/_server_rows.html"
    context_object_name = "instances"
    paginate_by = 25

    def get_queryset(self):
        self.filterset = InstanceFilterSet(self.request.GET or None, queryset=Instance.objects.all())
        return selectors.instance_list(queryset=self.filterset.qs, with_state=False)

    def get_context_data(self, **kwargs):
        filtered = any(v for k, v in self.request.GET.items() if k != "page")
        return super().get_context_data(filter=self.filterset, filtered=filtered, **kwargs)


class ServerDetailView(HtmxPartialMixin, RoleRequiredMixin, DetailView):
    template_name = "fleet/server_detail.html"
    partial_template_name = "fleet/_server_status.html"
    context_object_name = "instance"

    def get_queryset(self):
        # The live status refresh (every 5 s) needs no reported state: up to 10,000 apps stay unread.
        return selectors.instance_list(with_state=not self.is_htmx)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if self.is_htmx:
            return context
        instance = self.object
        updates = [dict(u, released=parse_datetime(u.get("released_at") or "")) for u in instance.updates]
        updates.sort(key=lambda u: (u["kind"] != "os", u.get("name", "")))
        context.update(
            settings_items=sorted(instance.settings.items()),
            updates=updates[:UPDATES_SHOWN],
            updates_total=len(updates),
            runs=selectors.command_runs_for_instance(instance),
            panels=panel_urls(getattr(settings, "SERVER_DETAIL_PANELS", []), instance.pk),
            **apps_table(self.request, instance),
        )
        return context


def apps_table(request, instance: Instance) -> dict:
    """Context of the server page's apps table: filtered by name (`q`) and state, one page of it."""
    q, state = request.GET.get("q", "")[:100], request.GET.get("state", "")
    apps = selectors.instance_apps(instance, q=q, state=state)
    page = Paginator(apps, APPS_PER_PAGE).get_page(request.GET.get("page"))
    return {
        "apps_page": page,
        "apps_total": len(instance.apps),
        "apps_query": {"q": q, "state": state},
        "apps_filtered": bool(q.strip() or state in ("running", "stopped")),
    }


class ServerAppsView(RoleRequiredMixin, TemplateView):
    """htmx: the server page's apps table for a search, a state filter or another page."""

    template_name = "fleet/_server_apps.html"

    def get_context_data(self, **kwargs):
        instance = get_object_or_404(Instance.objects.only("id", "name", "apps"), pk=self.kwargs["pk"])
        return super().get_context_data(instance=instance, **apps_table(self.request, instance), **kwargs)


class ServerEditView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "fleet/server_form.html"
    form_class = InstanceEditForm

    @cached_property
    def instance(self):  # loaded after the role check: a viewer gets 403, not a hint whether it exists
        return get_object_or_404(Instance, pk=self.kwargs["pk"])

    def get_initial(self):
        return {
            "address": self.instance.address,
            "groups": list(self.instance.groups.all()),
            "tags": ", ".join(str(t) for t in self.instance.tags.all()),
        }

    def get_context_data(self, **kwargs):
        return super().get_context_data(instance=self.instance, **kwargs)

    def perform(self, form):
        data = form.cleaned_data
        services.instance_update(
            actor=self.request.user,
            instance=self.instance,
            address=data["address"].strip(),
            groups=list(data["groups"]),
            tags=data["tags"],
        )
        messages.success(self.request, f"{self.instance.name} updated.")
        return redirect(self.instance)


class ServerDeleteView(ServiceActionView):
    model = Instance
    confirm_title = "Delete server"
    confirm_text = (
        "Delete {obj.name} from the fleet? Its reported state and command history are removed and its agent "
        "credential stops working. The agent must register again to come back."
    )
    confirm_button = "Delete server"

    def get_success_url(self, obj):
        return reverse("fleet:server_list")

    def act(self, obj):
        name = obj.name
        services.instance_delete(actor=self.request.user, instance=obj)
        return f"Server {name} deleted."


# --- Groups ------------------------------------------------------------------------------------


class GroupListView(RoleRequiredMixin, ListView):
    template_name = "fleet/group_list.html"
    context_object_name = "groups"
    paginate_by = 50

    def get_queryset(self):
        return selectors.group_list()


class GroupDetailView(RoleRequiredMixin, ListView):
    """A group and its members (paginated, like the servers list)."""

    template_name = "fleet/group_detail.html"
    context_object_name = "instances"
    paginate_by = 25

    def get_queryset(self):
        self.group = get_object_or_404(Group, pk=self.kwargs["pk"])
        return selectors.instance_list(queryset=self.group.instances.all(), with_state=False)

    def get_context_data(self, **kwargs):
        return super().get_context_data(group=self.group, **kwargs)


class GroupCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "fleet/group_form.html"
    form_class = GroupForm

    def perform(self, form):
        group = services.group_create(actor=self.request.user, **form.cleaned_data)
        messages.success(self.request, f"Group {group.name} created.")
        return redirect(group)


class GroupUpdateView(GroupCreateView):
    @cached_property
    def group(self):
        return get_object_or_404(Group, pk=self.kwargs["pk"])

    def get_initial(self):
        return {"name": self.group.name, "description": self.group.description}

    def get_context_data(self, **kwargs):
        return super().get_context_data(group=self.group, **kwargs)

    def perform(self, form):
        group = services.group_update(actor=self.request.user, group=self.group, **form.cleaned_data)
        messages.success(self.request, f"Group {group.name} saved.")
        return redirect(group)


class GroupDeleteView(ServiceActionView):
    model = Group
    confirm_title = "Delete group"
    confirm_text = (
        "Delete the group {obj.name}? Its servers stay in the fleet; they only leave the group. Policies, "
        "commands and canaries that target this group will no longer match these servers through it."
    )
    confirm_button = "Delete group"

    def get_success_url(self, obj):
        return reverse("fleet:group_list")

    def act(self, obj):
        name = obj.name
        services.group_delete(actor=self.request.user, group=obj)
        return f"Group {name} deleted."


# --- Registration tokens -----------------------------------------------------------------------


class TokenListView(RoleRequiredMixin, ListView):
    template_name = "fleet/token_list.html"
    context_object_name = "tokens"
    paginate_by = 50

    def get_queryset(self):
        return selectors.registration_token_list()


class TokenCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "fleet/token_form.html"
    form_class = RegistrationTokenForm

    def perform(self, form):
        data = form.cleaned_data
        token, plaintext = services.registration_token_create(
            actor=self.request.user,
            name=data["name"],
            max_uses=data["max_uses"],
            expires_at=data["expires_at"],
            groups=list(data["groups"]),
            tags=data["tags"],
        )
        messages.success(self.request, f"Registration token {token.name} created. Copy it now: it is not shown again.")
        # The plaintext exists only in this response: never stored, never in a URL, not cached.
        context = {
            "token": token,
            "plaintext": plaintext,
            "panel_url": self.request.build_absolute_uri("/").rstrip("/"),
            "register_url": self.request.build_absolute_uri(reverse("agent:register")),
        }
        response = render(self.request, "fleet/token_created.html", context)
        response["Cache-Control"] = "no-store"
        return response


class TokenDetailView(RoleRequiredMixin, ListView):
    """A token and its usage history: every registration attempt, accepted or rejected."""

    template_name = "fleet/token_detail.html"
    context_object_name = "uses"
    paginate_by = 50

    def get_queryset(self):
        self.token = get_object_or_404(selectors.registration_token_list(), pk=self.kwargs["pk"])
        return self.token.uses.select_related("instance")

    def get_context_data(self, **kwargs):
        return super().get_context_data(token=self.token, **kwargs)


class TokenRevokeView(ServiceActionView):
    model = RegistrationToken
    confirm_title = "Revoke registration token"
    confirm_text = (
        "Revoke {obj.name}? Agents can no longer register with it. Servers that already registered keep working."
    )
    confirm_button = "Revoke token"

    def act(self, obj):
        services.registration_token_revoke(actor=self.request.user, token=obj)
        return f"Registration token {obj.name} revoked."


# --- Operations: the command queue -------------------------------------------------------------


class CommandListView(HtmxPartialMixin, RoleRequiredMixin, ListView):
    template_name = "fleet/command_list.html"
    partial_template_name = "fleet/_command_rows.html"
    context_object_name = "commands"
    paginate_by = 25

    def get_queryset(self):
        self.filterset = CommandFilterSet(self.request.GET or None, queryset=Command.objects.all())
        # Filter by id so the run counts cover all of a command's runs, not only the filtered instance's.
        matching = Command.objects.filter(pk__in=self.filterset.qs.values("pk"))
        # Aggregating queries ignore Meta.ordering: order explicitly (newest first).
        return selectors.command_list(queryset=matching).order_by("-created", "-id")

    def get_context_data(self, **kwargs):
        filtered = any(v for k, v in self.request.GET.items() if k != "page")
        return super().get_context_data(filter=self.filterset, filtered=filtered, **kwargs)


class CommandCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.OPERATOR
    write_role = Role.OPERATOR
    template_name = "fleet/command_form.html"
    form_class = CommandForm

    def get_initial(self):
        initial = super().get_initial()
        # "Send command" from a server or group page preselects it as the target.
        instance_id, group_id = self.request.GET.get("instance", ""), self.request.GET.get("group", "")
        if instance_id.isdigit():
            initial.update(scope_kind="instances", scope_instances=[int(instance_id)])
        elif group_id.isdigit():
            initial.update(scope_kind="groups", scope_groups=[int(group_id)])
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


# --- Settings: license -----------------------------------------------------------


class LicenseView(RoleRequiredMixin, ServiceFormMixin, FormView):
    template_name = "fleet/license.html"
    form_class = LicenseUploadForm
    success_url = reverse_lazy("fleet:license")

    def get_context_data(self, **kwargs):
        status = current_license_status()
        limits = dict(status.info.limits) if status.info else {}
        return super().get_context_data(
            status=status,
            limits=limits,
            features=[(name, FEATURES[name], allowed) for name, allowed in status.features.items()],
            instance_count=Instance.objects.count(),
            history=License.objects.select_related("uploaded_by")[:20],
            **kwargs,
        )

    def perform(self, form):
        record = services.license_upload(actor=self.request.user, text=form.cleaned_data["text"])
        messages.success(
            self.request,
            f"License installed: {record.plan.title()} plan for {record.customer or 'unnamed customer'}, "
            f"valid until {record.expires_at:%Y-%m-%d}.",
        )
        return redirect(self.success_url)
