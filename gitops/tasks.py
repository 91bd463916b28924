from celery import shared_task


@shared_task
def sync_due_repositories():
    return 0
