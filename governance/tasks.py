"""Thin tasks: take ids, call one service. The beat schedule (config/settings.py) runs the last two."""

from celery import shared_task

from . import services


@shared_task
def evaluate_instance_task(instance_id: int):
    """One instance now. Heartbeats queue theirs for evaluate_pending_task; kept for messages already
    queued and for callers that want one instance evaluated at once."""
    return services.evaluate_instance(instance_id=instance_id)


@shared_task
def evaluate_pending_task():
    return services.evaluate_pending()


@shared_task
def recount_policies_task():
    return services.recount_due_policies()


@shared_task
def evaluate_policy_scope_task(policy_id: int | None, previous_instance_ids: list[int] | None = None):
    return services.evaluate_policy_scope(policy_id=policy_id, previous_instance_ids=previous_instance_ids)


@shared_task
def evaluate_fleet_task():
    return services.evaluate_fleet()


@shared_task(name="governance.tasks.evaluate_time_based")
def evaluate_time_based():
    return services.evaluate_time_based()


@shared_task(name="governance.tasks.take_compliance_snapshot")
def take_compliance_snapshot():
    return services.compliance_snapshot_take()
