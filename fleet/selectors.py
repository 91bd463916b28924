from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from .choices import InstanceStatus, RunStatus, ScopeKind
from .models import Command, CommandRun, Group, Instance, RegistrationToken, ScopedModel
from .scopes import Scope, parse_tag


def instances_in_scope(scope: Scope, queryset: QuerySet | None = None) -> QuerySet:
    """The one place a scope becomes a set of instances (policies, commands, canaries, GitOps)."""
    qs = Instance.objects.all() if queryset is None else queryset
    if scope.kind == ScopeKind.ALL:
        return qs
    if scope.kind == ScopeKind.GROUPS:
        through = Instance.groups.through
        return qs.filter(Exists(through.objects.filter(instance_id=OuterRef("pk"), group_id__in=scope.group_ids)))
    if scope.kind == ScopeKind.TAGS:
        through = Instance.tags.through
        for tag in scope.tags:
            key, value = parse_tag(tag)
            qs = qs.filter(Exists(through.objects.filter(instance_id=OuterRef("pk"), tag__key=key, tag__value=value)))
        return qs
    return qs.filter(pk__in=scope.instance_ids)


# The reported state: up to 10,000 apps per instance (a real server has 1,000–3,000 packages), so a page
# that lists instances never loads it.
STATE_FIELDS = ("apps", "settings", "updates")


def instance_list(*, queryset: QuerySet | None = None, with_state: bool = True) -> QuerySet:
    """Instances with what list pages show, in a fixed number of queries whatever the fleet size.
    `with_state=False` leaves the reported state (STATE_FIELDS) unread: what every list wants."""
    qs = Instance.objects.all() if queryset is None else queryset
    if not with_state:
        qs = qs.defer(*STATE_FIELDS)
    return qs.prefetch_related("groups", "tags")


def instance_apps(instance: Instance, *, q: str = "", state: str = "") -> list[dict]:
    """The instance's reported apps in name order: those whose name contains `q` (any case), and with
    `state` "running" or "stopped" only those. Filtered in memory: the list is one column of one row.
    Entries that are not app objects (a state stored before today's validation) are left out."""
    needle = q.strip().lower()
    apps = [a for a in instance.apps if isinstance(a, dict)] if isinstance(instance.apps, list) else []
    if needle:
        apps = [a for a in apps if needle in str(a.get("name", "")).lower()]
    if state in ("running", "stopped"):
        apps = [a for a in apps if bool(a.get("running")) == (state == "running")]
    return sorted(apps, key=lambda a: str(a.get("name", "")))


def instance_memberships(instance_ids=None) -> dict[int, tuple[set[int], set[str]]]:
    """{instance_id: (group ids, {"key=value"})} for in-memory scope matching: the whole fleet, or the
    given instances only (a heartbeat, one group) without reading the rest."""
    ids = Instance.objects.values_list("pk", flat=True) if instance_ids is None else instance_ids
    result: dict[int, tuple[set[int], set[str]]] = {pk: (set(), set()) for pk in ids}
    groups = Instance.groups.through.objects.values_list("instance_id", "group_id")
    tags = Instance.tags.through.objects.values_list("instance_id", "tag__key", "tag__value")
    if instance_ids is not None:
        groups, tags = groups.filter(instance_id__in=instance_ids), tags.filter(instance_id__in=instance_ids)
    for instance_id, group_id in groups:
        result[instance_id][0].add(group_id)
    for instance_id, key, value in tags:
        result[instance_id][1].add(f"{key}={value}")
    return result


def offline_cutoff(now=None):
    """Instances not seen since this moment have missed OFFLINE_AFTER_MISSED heartbeats."""
    now = now or timezone.now()
    return now - timedelta(seconds=settings.HEARTBEAT_INTERVAL * settings.OFFLINE_AFTER_MISSED)


def fleet_summary() -> dict:
    counts = Instance.objects.aggregate(
        total=Count("pk"),
        online=Count("pk", filter=Q(status=InstanceStatus.ONLINE)),
        offline=Count("pk", filter=Q(status=InstanceStatus.OFFLINE)),
        pending=Count("pk", filter=Q(status=InstanceStatus.PENDING)),
    )
    counts["queue_pending"] = CommandRun.objects.filter(status=RunStatus.PENDING).count()
    counts["queue_running"] = CommandRun.objects.filter(status=RunStatus.RUNNING).count()
    return counts


def command_list(*, queryset: QuerySet | None = None) -> QuerySet:
    qs = Command.objects.all() if queryset is None else queryset
    return (
        qs.select_related("created_by")
        .prefetch_related("scope_groups", "scope_instances")
        .annotate(
            run_total=Count("runs"),
            run_pending=Count("runs", filter=Q(runs__status=RunStatus.PENDING)),
            run_running=Count("runs", filter=Q(runs__status=RunStatus.RUNNING)),
            run_completed=Count("runs", filter=Q(runs__status=RunStatus.COMPLETED)),
            run_failed=Count("runs", filter=Q(runs__status=RunStatus.FAILED)),
        )
    )


# --- Pages (dashboard, lists, details) ------------------------------------------------------------


def os_version_counts() -> list[tuple[str, int]]:
    """[(os_version, instances)] across the fleet, most common first; one query."""
    rows = Instance.objects.values("os_version").annotate(n=Count("pk")).order_by("-n", "os_version")
    return [(row["os_version"] or "unknown", row["n"]) for row in rows]


def instances_recently_offline(*, limit: int = 8) -> QuerySet:
    """Offline instances, the most recently lost first."""
    offline = Instance.objects.filter(status=InstanceStatus.OFFLINE).defer(*STATE_FIELDS)
    return offline.order_by("-last_seen_at", "name")[:limit]


def instances_needing_attention_first(*, limit: int = 10) -> QuerySet:
    """A short server list for the dashboard: offline, then awaiting a first heartbeat, then online."""
    rank = Case(
        When(status=InstanceStatus.OFFLINE, then=Value(0)),
        When(status=InstanceStatus.PENDING, then=Value(1)),
        default=Value(2),
    )
    return Instance.objects.defer(*STATE_FIELDS).annotate(attention=rank).order_by("attention", "name")[:limit]


def command_runs_for_command(command: Command) -> QuerySet:
    return command.runs.select_related("instance").order_by("instance__name")


def command_runs_for_instance(instance: Instance, *, limit: int = 15) -> QuerySet:
    return instance.command_runs.select_related("command").order_by("-created", "-id")[:limit]


def registration_token_list(*, queryset: QuerySet | None = None) -> QuerySet:
    qs = RegistrationToken.objects.all() if queryset is None else queryset
    return qs.select_related("created_by").prefetch_related("groups")


def group_list() -> QuerySet:
    return Group.objects.annotate(instance_count=Count("instances", distinct=True)).order_by("name")


def tag_usage() -> dict[str, list[dict]]:
    """{"key=value": [{"kind": "policy", "name": ..., "url": ...}]}: what selects servers by each tag,
    across every app's stored scopes (policies, exceptions, canaries, config entries; not command history)."""
    usage: dict[str, list[dict]] = {}
    for model in scoped_models():
        for obj in model.objects.filter(scope_kind=ScopeKind.TAGS):
            url = obj.get_absolute_url() if hasattr(obj, "get_absolute_url") else ""
            for tag in obj.scope_tags:
                usage.setdefault(tag, []).append({"kind": model._meta.verbose_name, "name": str(obj), "url": url})
    return usage


def scoped_models() -> list[type[ScopedModel]]:
    """Every stored kind of scope that selects servers from now on (any app's). Commands are left out:
    a command's scope is history, its runs were fixed when it was queued."""
    return [m for m in apps.get_models() if issubclass(m, ScopedModel) and not m._meta.abstract and m is not Command]
