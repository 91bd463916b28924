"""Servers and groups: lists, the server page with its apps table, edits."""

from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html_join
from django.views import View
from django.views.generic import DetailView, FormView, ListView, TemplateView

from common.choices import Role
from common.tables import TableListMixin
from common.views import HtmxPartialMixin, RoleRequiredMixin, ServiceActionView, ServiceFormMixin
from fleet import selectors, services
from fleet.filters import InstanceFilterSet
from fleet.forms import GroupForm, InstanceEditForm
from fleet.models import Group, Instance
from fleet.state import parse_released_at
from fleet.tables import GroupTable, ServerTable

from .dashboard import panel_urls

APPS_PER_PAGE = 50
UPDATES_SHOWN = 100


# --- Servers -----------------------------------------------------------------------------------


# The governance app adds a compliance standing per instance (a reverse one-to-one named "compliance").
# fleet does not import governance: the list shows the column when that relation exists.
HAS_COMPLIANCE = hasattr(Instance, "compliance")


class ServerListView(HtmxPartialMixin, TableListMixin, RoleRequiredMixin, ListView):
    template_name = "fleet/server_list.html"
    partial_template_name = "fleet/_server_rows.html"
    table_class = ServerTable
    context_object_name = "instances"
    paginate_by = 25
    show_compliance = HAS_COMPLIANCE
    sort_fields = {
        "name": "name",
        "status": "status",
        "os": "os_version",
        "last_seen": "last_seen_at",
        **({"compliance": "compliance__score"} if HAS_COMPLIANCE else {}),
    }

    def get_queryset(self):
        self.filterset = InstanceFilterSet(self.request.GET or None, queryset=Instance.objects.all())
        qs = selectors.instance_list(queryset=self.filterset.qs, with_state=False)
        if HAS_COMPLIANCE:
            qs = qs.select_related("compliance")
        return self.sorted(qs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(filter=self.filterset, show_compliance=HAS_COMPLIANCE, **kwargs)


class ServerNamesView(RoleRequiredMixin, View):
    """htmx: <option>s of up to 20 server names for what was typed (the filters' instance boxes); names
    that start with it first."""

    LIMIT = 20

    def get(self, request):
        typed = (request.GET.get("q") or next(iter(request.GET.values()), ""))[:100].strip()
        qs = Instance.objects.filter(name__icontains=typed) if typed else Instance.objects.all()
        first = qs.filter(name__istartswith=typed).order_by("name").values_list("name", flat=True)[: self.LIMIT]
        names = list(first)
        if len(names) < self.LIMIT:
            rest = qs.exclude(name__in=names).order_by("name").values_list("name", flat=True)
            names += list(rest[: self.LIMIT - len(names)])
        html = format_html_join("", '<option value="{}"></option>', ((n,) for n in names))
        return HttpResponse(html)


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
        updates = shown_updates(instance.updates)
        context.update(
            settings_items=sorted(instance.settings.items(), key=lambda item: str(item[0]))
            if isinstance(instance.settings, dict)
            else [],
            updates=updates[:UPDATES_SHOWN],
            updates_total=len(updates),
            runs=selectors.command_runs_for_instance(instance),
            panels=panel_urls(getattr(settings, "SERVER_DETAIL_PANELS", []), instance.pk),
            **apps_table(self.request, instance),
        )
        return context


def shown_updates(stored) -> list[dict]:
    """The stored updates as the page lists them, OS first. Stored state can predate today's validation
    (governance marks such an instance state_invalid): what is not an update object is left out, and a
    release time outside fleet.state's range shows as written instead of as a date (year 1 was a 500)."""
    updates = []
    for u in stored if isinstance(stored, list) else []:
        if isinstance(u, dict):
            utc, _problem = parse_released_at(u.get("released_at"))
            updates.append(dict(u, released=datetime.fromisoformat(utc) if utc else None))
    updates.sort(key=lambda u: (u.get("kind") != "os", str(u.get("name", ""))))
    return updates


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


class GroupListView(TableListMixin, RoleRequiredMixin, ListView):
    template_name = "fleet/group_list.html"
    table_class = GroupTable
    sort_fields = {"name": "name", "servers": "instance_count"}
    context_object_name = "groups"
    paginate_by = 50

    def get_queryset(self):
        return self.sorted(selectors.group_list())


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
