"""Thin Celery tasks: the beat scan and one sync per repository."""

from celery import shared_task

from fleet.licensing import plan_allows
from fleet.licensing_store import current_license_status

from . import services


@shared_task
def sync_due_repositories():
    """Beat (every 15 s): queue a sync for each repository whose next_sync_at has passed."""
    if not plan_allows(current_license_status().plan, "gitops"):
        return 0
    due = services.repositories_due()
    for pk in due:
        sync_repository.delay(pk, "schedule")
    return len(due)


@shared_task
def sync_repository(repository_id: int, trigger: str = "schedule"):
    run = services.repository_sync(repository_id=repository_id, trigger=trigger)
    return run.status if run else "busy"
