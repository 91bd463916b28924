"""Thin Celery tasks: the beat scan, one sync or preview per repository, host key fetches, reconciles."""

from celery import shared_task

from fleet.licensing_store import feature_licensed

from . import services

# A sync someone asked for (webhook, "Sync now") that finds another sync running waits for it, so a
# push that lands mid-sync is still applied; scheduled syncs do not wait (the beat asks again).
BUSY_RETRY_SECONDS, BUSY_RETRIES = 2, 90


@shared_task
def sync_due_repositories():
    """Beat (every 15 s): queue a sync for each repository whose next_sync_at has passed."""
    if not feature_licensed(services.FEATURE):
        return 0
    due = services.repositories_due()
    for pk in due:
        sync_repository.delay(pk, "schedule")
    return len(due)


@shared_task(bind=True, max_retries=BUSY_RETRIES)
def sync_repository(self, repository_id: int, trigger: str = "schedule", revision: str = ""):
    run = services.repository_sync(repository_id=repository_id, trigger=trigger, revision=revision)
    if run is None and trigger != "schedule" and services.repository_is_busy(repository_id):
        raise self.retry(countdown=BUSY_RETRY_SECONDS)
    return run.status if run else "skipped"


@shared_task(bind=True, max_retries=BUSY_RETRIES)
def preview_repository(self, run_id: int):
    run = services.repository_preview(run_id=run_id)
    if run is None:
        raise self.retry(countdown=BUSY_RETRY_SECONDS)
    return run.status


@shared_task
def scan_host_key(repository_id: int):
    repo = services.repository_host_key_scan(repository_id=repository_id)
    return repo.host_key_scan if repo else "gone"


@shared_task
def drive_desired_config(actor, level: str, target: str, description: str):
    """A panel edit of the desired configuration: plan and queue the commands it implies (its API
    answered 202). `actor`: the editing user's id, or a label."""
    return len(services.desired_entry_drive(actor=actor, level=level, target=target, description=description))


@shared_task
def reconcile_instance(instance_id: int):
    """A heartbeat changed an instance's reported state: drive it to its desired configuration."""
    return len(services.instance_reconcile(instance_id=instance_id))
