"""Thin Celery tasks. State lives in the database, so a restarted worker resumes where the last one stopped."""

from celery import shared_task

from . import services
from .services.scheduling import OVERDUE_AFTER


@shared_task
def advance_due_deployments() -> int:
    """Beat, every 5 s: the safety net. Each deployment's next look is normally a task enqueued for its own
    due time (services.scheduling); this re-enqueues those overdue, whose task was lost with a worker."""
    ids = services.due_deployment_ids(overdue_by=OVERDUE_AFTER)
    for pk in ids:
        # Expires before the next beat tick would enqueue it again, so a backlog cannot pile up.
        advance_deployment.apply_async(args=[pk], expires=60)
    return len(ids)


@shared_task
def advance_deployment(pk: int, due: float | None = None) -> str | None:
    """One look at one deployment; `due` is the time it was enqueued for (see services.scheduling)."""
    return services.canary_advance(deployment_id=pk, due=due)
