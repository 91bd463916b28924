from celery import shared_task

from . import retention


@shared_task(ignore_result=True)
def prune_old_records():
    """Daily: delete what the retention settings no longer keep (common/retention.py)."""
    retention.prune()
