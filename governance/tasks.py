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


# --- Remediation (enforce mode) and reports: governance/remediation, governance/reports ----------


@shared_task(name="governance.tasks.remediation_tick")
def remediation_tick():
    """Beat: settle attempts, trip breakers, queue fixes for every enforce-mode policy."""
    from .remediation.services import remediation_tick as tick

    return {str(k): v for k, v in tick().items()}


@shared_task(name="governance.tasks.remediate_policy")
def remediate_policy(policy_id: int):
    from .remediation.services import remediate_policy as run

    return run(policy_id=policy_id)


@shared_task(name="governance.tasks.send_weekly_digest")
def send_weekly_digest():
    from .reports.digest import weekly_digest_send

    return weekly_digest_send()
