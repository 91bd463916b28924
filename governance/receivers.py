"""Reactions to fleet signals: each only enqueues a task (fleet sends these after commit)."""

from django.db import transaction


def on_instance_state_changed(sender, instance_id, **kwargs):
    from .tasks import evaluate_instance_task

    transaction.on_commit(lambda: evaluate_instance_task.delay(instance_id))


def on_instances_went_offline(sender, instance_ids, **kwargs):
    # Going offline changes nothing yet: an instance becomes "unknown" only once it has been offline
    # for GOVERNANCE_STALE_AFTER_SECONDS, which the time-based beat sweep notices.
    return None
