import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.generic import DetailView, FormView, ListView, View

from common.choices import Role
from common.exceptions import ApplicationError
from common.tables import TableListMixin, export_url
from common.validators import parse_id
from common.views import RoleRequiredMixin, ServiceFormMixin, redirect_next
from fleet.mixins import FeatureRequiredMixin

from . import selectors, services
from .choices import ConflictStatus, HostKeyScan, Level, SyncStatus
from .forms import (
    ConflictResolveForm,
    ConnectForm,
    DesiredEntryForm,
    DisconnectForm,
    HostKeyConfirmForm,
    RepositorySettingsForm,
    SyncToRevisionForm,
)
from .models import Conflict, DesiredEntry, Repository, SyncRun
from .tables import ConflictTable, RepositoryTable, SyncRunTable


class GitOpsViewMixin(FeatureRequiredMixin, RoleRequiredMixin):
    license_feature = services.FEATURE
    write_role = Role.ADMIN


def _partial(request, name: str) -> bool:
    return bool(request.headers.get("HX-Request")) and request.GET.get("partial") == name


class RepositoryListView(TableListMixin, GitOpsViewMixin, ListView):
    template_name = "gitops/list.html"
    table_class = RepositoryTable
    context_object_name = "repositories"
    paginate_by = 50
    sort_fields = {
        "name": "name",
        "branch": "branch",
        "status": "status",
        "last_sync": "last_sync_at",
        "next_sync": "next_sync_at",
        "conflicts": "open_conflicts",
    }

    def get_template_names(self):
        return ["gitops/_repository_rows.html"] if _partial(self.request, "rows") else [self.template_name]

    def get_queryset(self):
        return self.sorted(selectors.repository_list())

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            title="GitOps",
            conflicts=selectors.conflicts_open()[:50],
            can_sync=self.request.user.has_role(Role.OPERATOR),
            **kwargs,
        )


class RepositoryConnectView(GitOpsViewMixin, ServiceFormMixin, FormView):
    template_name = "gitops/connect.html"
    form_class = ConnectForm
    required_role = Role.ADMIN

    def perform(self, form):
        repo = services.repository_connect(actor=self.request.user, **form.cleaned_data)
        if repo.host_key:
            messages.success(
                self.request,
                f"Connected {repo.name}; host key {repo.host_key_fingerprint} pinned. The first sync is queued.",
            )
        else:
            messages.info(
                self.request,
                "A worker is fetching the server's host key: compare its fingerprint below and confirm it to start syncing.",
            )
        return redirect(repo.get_absolute_url())


class RepositoryDetailView(GitOpsViewMixin, DetailView):
    template_name = "gitops/detail.html"
    context_object_name = "repository"

    def get_queryset(self):
        return selectors.repository_list()

    def get_template_names(self):
        return ["gitops/_repository_live.html"] if _partial(self.request, "live") else [self.template_name]

    def get(self, request, *args, **kwargs):
        if request.GET.get("export") == "csv":  # the sync history, every run
            return SyncRunTable().csv_response(selectors.repository_runs(self.get_object()))
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        repo = self.object
        page = Paginator(selectors.repository_runs(repo), 20).get_page(self.request.GET.get("page"))
        recent = list(reversed(page.object_list[:20])) if page.number == 1 else []
        chart = {
            "type": "bar",
            "data": {
                "labels": [r.started_at.strftime("%m-%d %H:%M:%S") for r in recent],
                "datasets": [
                    {
                        "label": "Duration (s)",
                        "data": [round(r.duration or 0, 2) for r in recent],
                        "backgroundColor": "#2563eb",
                        "yAxisID": "y",
                    },
                    {
                        "label": "Commands queued",
                        "data": [r.commands_issued for r in recent],
                        "backgroundColor": "#16a34a",
                        "yAxisID": "y1",
                    },
                ],
            },
            "options": {
                "plugins": {"legend": {"position": "bottom"}},
                "scales": {
                    "y": {"beginAtZero": True, "title": {"display": True, "text": "seconds"}},
                    "y1": {
                        "beginAtZero": True,
                        "position": "right",
                        "grid": {"drawOnChartArea": False},
                        "title": {"display": True, "text": "commands"},
                    },
                },
            },
        }
        context.update(
            title=repo.name,
            page_obj=page,
            runs=page.object_list,
            table=SyncRunTable(self),
            export_url=export_url(self.request),
            conflicts=selectors.conflicts_open(repo),
            confirm_form=HostKeyConfirmForm(initial={"fingerprint": repo.pending_host_key_fingerprint}),
            disconnect_form=DisconnectForm(),
            webhook_secret=self.request.session.pop(f"gitops-webhook-secret-{repo.pk}", None),
            webhook_url=self.request.build_absolute_uri(reverse("gitops-api:gitops-webhook", args=[repo.pk])),
            can_sync=self.request.user.has_role(Role.OPERATOR),
            sync_chart=chart if recent else None,
            busy=repo.host_key_scan == HostKeyScan.PENDING or repo.runs.filter(status=SyncStatus.RUNNING).exists(),
        )
        return context


class RepositoryActionView(GitOpsViewMixin, View):
    """POST-only actions on a repository: sync, preview, host keys, webhook secret, disconnect."""

    action = ""  # the URL sets it, and write_role=Role.OPERATOR for "sync" and "preview"

    def post(self, request, pk):
        repo = get_object_or_404(Repository, pk=pk)
        try:
            return self.act(request, repo) or redirect(repo.get_absolute_url())
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect(repo.get_absolute_url())

    def act(self, request, repo):
        if self.action == "sync":
            services.repository_sync_request(actor=request.user, repository=repo)
            messages.success(request, f"A sync of {repo.name} is queued.")
        elif self.action == "preview":
            run = services.repository_preview_request(actor=request.user, repository=repo)
            messages.info(request, "A worker is previewing the sync: this page shows the result when it is ready.")
            return redirect(run.get_absolute_url())
        elif self.action == "fetch_host_key":
            services.repository_host_key_fetch(actor=request.user, repository=repo)
            messages.info(
                request, "A worker is fetching the server's host key: compare its fingerprint and confirm it."
            )
        elif self.action == "confirm_host_key":
            fingerprint = HostKeyConfirmForm(request.POST).data.get("fingerprint", "")
            services.repository_host_key_confirm(actor=request.user, repository=repo, fingerprint=fingerprint)
            messages.success(request, f"Host key {fingerprint} pinned. The sync is queued.")
        elif self.action == "webhook_secret":
            secret = services.repository_webhook_secret_rotate(actor=request.user, repository=repo)
            request.session[f"gitops-webhook-secret-{repo.pk}"] = secret
            messages.success(request, "A new webhook secret is shown below this once; the previous one stops working.")
        elif self.action == "delete":
            form = DisconnectForm(request.POST)
            entries = form.cleaned_data["entries"] if form.is_valid() else ""
            count = services.repository_delete(actor=request.user, repository=repo, entries=entries)
            kept = "kept as panel-owned" if entries == "keep" else "removed"
            messages.success(request, f"Disconnected {repo.name}; {count} desired-configuration entries {kept}.")
            return redirect("gitops:list")
        return None


class RepositoryFormView(GitOpsViewMixin, ServiceFormMixin, FormView):
    """A form about one repository whose errors stay on its fields: settings, sync to a revision."""

    template_name = "gitops/repository_form.html"

    @cached_property
    def repository(self):  # looked up after the role check: a viewer gets 403, not a 404 probe
        return get_object_or_404(Repository, pk=self.kwargs["pk"])

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            repository=self.repository, title=f"{self.heading} · {self.repository.name}", heading=self.heading
        )
        context["intro"] = self.intro
        return context


class RepositorySettingsView(RepositoryFormView):
    form_class = RepositorySettingsForm
    heading = "Settings"
    intro = (
        "A new branch, directory or revision is read from scratch at the next sync, which starts at once. "
        "Leaving the manual strategy closes the open conflicts: the new strategy decides those keys."
    )

    def get_initial(self):
        repo = self.repository
        return {
            "branch": repo.branch,
            "path": repo.path,
            "revision": repo.revision,
            "prune": repo.prune,
            "sync_interval": repo.sync_interval,
            "conflict_strategy": repo.conflict_strategy,
        }

    def perform(self, form):
        open_conflicts = self.repository.conflicts.filter(status=ConflictStatus.OPEN).count()
        repo = services.repository_update(actor=self.request.user, repository=self.repository, **form.cleaned_data)
        closed = open_conflicts - repo.conflicts.filter(status=ConflictStatus.OPEN).count()
        extra = (
            f" {closed} open conflict(s) closed: the sync now queued decides them by the new strategy."
            if closed
            else ""
        )
        messages.success(self.request, "Repository settings saved." + extra)
        return redirect(self.repository.get_absolute_url())


class SyncToRevisionView(RepositoryFormView):
    form_class = SyncToRevisionForm
    write_role = Role.OPERATOR
    heading = "Sync to a revision"
    intro = (
        "Roll the fleet to a tag or an earlier commit's configuration. The repository stays pinned to it "
        "(scheduled syncs do not bring the branch head back) until its pinned revision is cleared in Settings."
    )

    def perform(self, form):
        revision = form.cleaned_data["revision"]
        services.repository_sync_to_revision(actor=self.request.user, repository=self.repository, revision=revision)
        messages.success(self.request, f"A sync to {revision} is queued; the repository is pinned there.")
        return redirect(self.repository.get_absolute_url())


class SyncRunDetailView(GitOpsViewMixin, DetailView):
    template_name = "gitops/run_detail.html"
    context_object_name = "run"

    def get_queryset(self):
        return SyncRun.objects.select_related("repository")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        run = self.object
        context["title"] = f"{'Preview' if run.dry_run else 'Sync'} #{run.pk}"
        context["is_running"] = run.status == SyncStatus.RUNNING
        by_instance: dict[str, list] = {}
        if run.dry_run:
            for command in run.commands:
                for name in command.get("instances", []):
                    by_instance.setdefault(name, []).append(command)
        context["by_instance"] = sorted(by_instance.items())[:500]
        context["by_instance_count"] = len(by_instance)
        return context

    def get_template_names(self):
        return ["gitops/_run_body.html"] if _partial(self.request, "run") else [self.template_name]


class ConflictListView(TableListMixin, GitOpsViewMixin, ListView):
    """Open conflicts as cards (the values side by side and the resolve buttons); CSV like every list."""

    template_name = "gitops/conflicts.html"
    table_class = ConflictTable
    context_object_name = "conflicts"
    paginate_by = 50
    CLOSED_SHOWN = 20  # the recently closed ones below the open ones, with how each was closed

    @cached_property
    def repository(self):
        repository_id = parse_id(self.request.GET.get("repository"))
        return get_object_or_404(Repository, pk=repository_id) if repository_id else None

    def get_queryset(self):
        return selectors.conflicts_open(self.repository).order_by("-detected_at", "-id")

    def get_context_data(self, **kwargs):
        closed = selectors.conflicts_closed(self.repository)[: self.CLOSED_SHOWN]
        return super().get_context_data(title="GitOps conflicts", repository=self.repository, closed=closed, **kwargs)


class ConflictResolveView(GitOpsViewMixin, View):
    def post(self, request, pk):
        conflict = get_object_or_404(Conflict, pk=pk)
        form = ConflictResolveForm(request.POST)
        if not form.is_valid():
            messages.error(request, "; ".join(" ".join(v) for v in form.errors.values()))
        else:
            try:
                services.conflict_resolve(
                    actor=request.user,
                    conflict=conflict,
                    resolution=form.cleaned_data["resolution"],
                    value=form.cleaned_data.get("parsed_value"),
                )
                messages.success(request, f"Resolved {conflict}.")
            except ApplicationError as exc:
                messages.error(request, exc.message)
        return redirect_next(request, "gitops:conflicts")


class DesiredConfigView(GitOpsViewMixin, ServiceFormMixin, FormView):
    """The desired-configuration editor: entries by level, and a form to set one."""

    template_name = "gitops/config.html"
    form_class = DesiredEntryForm

    def get_initial(self):
        initial = {"level": self.request.GET.get("level") or Level.FLEET, "target": self.request.GET.get("target", "")}
        if entry_id := parse_id(self.request.GET.get("edit")):
            entry = DesiredEntry.objects.filter(pk=entry_id).first()
            if entry:
                value = entry.value if entry.key.startswith("app:") else json.dumps(entry.value)
                initial.update(level=entry.level, target=entry.target, key=entry.key, value=value)
        return initial

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        level = self.request.GET.get("level")
        qs = selectors.entry_list(
            level=level if level in Level.values else None, target=self.request.GET.get("target") or None
        )
        page = Paginator(qs, 50).get_page(self.request.GET.get("page"))
        context.update(
            title="Desired configuration",
            page_obj=page,
            entries=page.object_list,
            levels=Level.choices,
            level=level,
            suggestions=DesiredEntryForm.target_suggestions(),
        )
        return context

    def perform(self, form):
        data = form.cleaned_data
        entry, planning = services.desired_entry_set(
            actor=self.request.user,
            level=data["level"],
            target=data["target"],
            key=data["key"],
            value=data["parsed_value"],
        )
        if planning is None:
            messages.success(self.request, f"{entry} already had this value: nothing to change.")
        else:
            n = planning.instances
            messages.success(
                self.request,
                f"Saved {entry}; the commands for the {n} affected instance{'s' if n != 1 else ''} are being "
                "planned and appear under Commands in a moment.",
            )
        repo = entry.repository
        if repo is not None:
            fate = {
                "git_wins": "its next sync puts Git's value back",
                "server_wins": "the panel's value stays and overrides Git's",
                "manual": "its next sync pauses on a conflict for an admin to decide",
            }[repo.conflict_strategy]
            messages.warning(self.request, f"Repository {repo.name} manages this key: {fate}.")
        return redirect("gitops:config")


class DesiredEntryDeleteView(GitOpsViewMixin, View):
    def post(self, request, pk):
        entry = get_object_or_404(DesiredEntry, pk=pk)
        services.desired_entry_delete(actor=request.user, entry=entry)
        messages.success(request, f"Removed {entry}.")
        return redirect("gitops:config")
