"""Shared reads for the GitOps pages and API."""

from django.db.models import Count, Q, QuerySet

from fleet.models import Instance
from fleet.selectors import instance_memberships

from .choices import ConflictStatus, Level
from .models import Conflict, DesiredEntry, Repository, SyncRun
from .reconcile import EntryIndex, plan_commands


def repository_list() -> QuerySet:
    return (
        Repository.objects.annotate(open_conflicts=Count("conflicts", filter=Q(conflicts__status=ConflictStatus.OPEN)))
        .defer("private_key_encrypted")
        .order_by("name")
    )


def repository_runs(repository: Repository) -> QuerySet:
    return SyncRun.objects.filter(repository=repository).defer("log").order_by("-started_at", "-id")


def conflicts_open(repository: Repository | None = None) -> QuerySet:
    qs = Conflict.objects.filter(status=ConflictStatus.OPEN).select_related("repository")
    return qs.filter(repository=repository) if repository is not None else qs


def conflicts_closed(repository: Repository | None = None) -> QuerySet:
    """Resolved and superseded conflicts, most recently closed first, with how each was closed."""
    qs = Conflict.objects.exclude(status=ConflictStatus.OPEN).select_related("repository")
    qs = qs.filter(repository=repository) if repository is not None else qs
    return qs.order_by("-resolved_at", "-id")


def entry_list(*, level: str | None = None, target: str | None = None, include_removed: bool = True) -> QuerySet:
    qs = DesiredEntry.objects.select_related("repository", "panel_changed_by")
    if level:
        qs = qs.filter(level=level)
    if target:
        qs = qs.filter(target=target)
    if not include_removed:
        qs = qs.filter(present=True)
    return qs.order_by("level", "target", "key")


def effective_config(instance: Instance) -> dict:
    """An instance's effective desired configuration, where each value comes from, and what is pending."""
    rows = DesiredEntry.objects.filter(present=True).values_list("level", "target", "key", "value")
    index = EntryIndex(rows)
    group_ids, tags = instance_memberships().get(instance.pk, ((), ()))
    groups = list(instance.groups.filter(pk__in=group_ids).values_list("name", flat=True))
    effective = index.effective(name=instance.name, groups=groups, tags=tags)
    desired = {k: v for k, (v, _s) in effective.items()}
    return {
        "instance": instance.name,
        "entries": [{"key": k, "value": v, "source": s} for k, (v, s) in sorted(effective.items())],
        "commands_needed": [
            {"kind": kind, "params": params} for kind, params in plan_commands(desired, instance.state)
        ],
    }


LEVEL_CHOICES = Level.choices
