"""Thin Celery tasks. State lives in the database, so a restarted worker resumes where the last one stopped."""

from celery import shared_task

from . import services


@shared_task
def advance_due_deployments() -> int:
    """Beat, every 5 s: hand each deployment whose next_poll_at is due to `advance_deployment`."""
    ids = services.due_deployment_ids()
    for pk in ids:
        # Expires before the next beat tick would enqueue it again, so a backlog cannot pile up.
        advance_deployment.apply_async(args=[pk], expires=60)
    return len(ids)


@shared_task
def advance_deployment(pk: int) -> str | None:
    return services.canary_advance(deployment_id=pk)
