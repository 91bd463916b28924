"""Conflicts: an admin decides between the panel's value and Git's (manual strategy)."""

from django.db import transaction
from django.utils import timezone

from common.exceptions import ApplicationError, ConflictError
from common.services import actor_label, audit_log

from ..choices import ConflictStatus, Resolution
from ..models import Conflict, DesiredEntry, Repository
from ..reconcile import same
from ..repoformat import validate_value
from ._base import actor_user, enqueue_sync

RESOLVED_WORDS = {
    Resolution.PANEL: "kept the panel value",
    Resolution.GIT: "took the Git value",
    Resolution.CUSTOM: "set another value",
}


@transaction.atomic
def conflict_resolve(*, actor, conflict: Conflict, resolution: str, value=None) -> Conflict:
    """An admin decides a manual conflict: keep the panel value, take Git's, or set another value.

    The store takes the chosen value and Git's value becomes the base; a value other than Git's is an
    accepted override, which the manual strategy keeps until Git changes the key or the panel edits it
    again. When no conflict of the repository is left open, its sync continues (queued at once).
    """
    conflict = Conflict.objects.select_for_update().get(pk=conflict.pk)
    if conflict.status == ConflictStatus.SUPERSEDED:
        raise ConflictError(f"This conflict was {conflict.outcome}: that strategy decides the key now.")
    if conflict.status != ConflictStatus.OPEN:
        raise ConflictError(f"This conflict is already resolved: {conflict.outcome}.")
    if resolution == Resolution.PANEL:
        present, chosen = conflict.panel_present, conflict.panel_value
    elif resolution == Resolution.GIT:
        present, chosen = conflict.git_present, conflict.git_value
    elif resolution == Resolution.CUSTOM:
        try:
            _key, chosen = validate_value(conflict.key, value)
        except ValueError as exc:
            raise ApplicationError(str(exc), field="value") from exc
        present = True
    else:
        raise ApplicationError(
            f"Unknown resolution '{resolution}': use {', '.join(Resolution.values)}.", field="resolution"
        )
    now = timezone.now()
    entry = (
        DesiredEntry.objects.select_for_update()
        .filter(level=conflict.level, target=conflict.target, key=conflict.key)
        .first()
    )
    if entry is None:
        entry = DesiredEntry(level=conflict.level, target=conflict.target, key=conflict.key)
    entry.present, entry.value = present, chosen if present else None
    entry.in_git, entry.git_base = conflict.git_present, conflict.git_value if conflict.git_present else None
    entry.repository = conflict.repository if conflict.git_present else None
    entry.git_synced_at = now
    if not (present == conflict.git_present and (not present or same(chosen, conflict.git_value))):
        entry.panel_changed_at, entry.panel_changed_by = now, actor_user(actor)
        entry.override_accepted = entry.in_git
    else:  # Git's value was taken: the entry is in line with Git again, no panel change is pending
        entry.panel_changed_at, entry.panel_changed_by = None, None
        entry.override_accepted = False
    if not entry.present and not entry.in_git:
        if entry.pk:
            entry.delete()
    else:
        entry.save()
    conflict.status, conflict.resolution, conflict.resolved_value = (
        ConflictStatus.RESOLVED,
        resolution,
        chosen if present else None,
    )
    conflict.resolved_at, conflict.resolved_by = now, actor_user(actor)
    conflict.outcome = f"{RESOLVED_WORDS[resolution]} ({actor_label(actor)})"
    conflict.save()
    audit_log(
        actor=actor,
        action="gitops.conflict.resolve",
        obj=conflict,
        details={
            "repository": conflict.repository.name,
            "level": conflict.level,
            "target": conflict.target,
            "key": conflict.key,
            "resolution": resolution,
            "value": conflict.resolved_value,
            "panel": conflict.panel_value,
            "git": conflict.git_value,
            "base": conflict.base_value,
        },
    )
    repo = conflict.repository
    if not repo.conflicts.filter(status=ConflictStatus.OPEN).exists():
        Repository.objects.filter(pk=repo.pk).update(next_sync_at=now)
        enqueue_sync(repo.pk, trigger="conflicts resolved")
    return conflict
