from celery import shared_task


@shared_task
def evaluate_time_based():
    return 0


@shared_task
def take_compliance_snapshot():
    return 0
