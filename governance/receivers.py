"""Reactions to fleet signals: each only enqueues a task (fleet sends these after commit)."""

import logging

from django.db import transaction

logger = logging.getLogger(__name__)


def _enqueue_instance(instance_id: int) -> None:
    from .services import queue_instance_evaluation

    try:
        queue_instance_evaluation(instance_id=instance_id)
    except Exception:  # a broker outage must not fail the heartbeat; the 5-minute sweep catches up
        logger.exception("could not enqueue the evaluation of instance %s", instance_id)


def on_instance_state_changed(sender, instance_id, **kwargs):
    transaction.on_commit(lambda: _enqueue_instance(instance_id))


def on_instances_went_offline(sender, instance_ids, **kwargs):
    # Going offline changes nothing yet: an instance becomes "unknown" only once it has been offline
    # for GOVERNANCE_STALE_AFTER_SECONDS, which the time-based beat sweep notices.
    return None


def on_instance_deleting(sender, instance, **kwargs):
    """pre_delete of an Instance (fleet.services.instance_delete holds its lock): the policies that
    counted its standing are recounted once the delete commits."""
    from .services import recount_after_instance_delete

    recount_after_instance_delete(instance_id=instance.pk)
