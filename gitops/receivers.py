"""Signal receivers: each only calls a service."""

import logging

from . import services

logger = logging.getLogger(__name__)


def reconcile_instance(sender, instance_id, **kwargs):
    """A new or changed instance is driven to its desired configuration."""
    try:
        services.instance_reconcile(instance_id=instance_id)
    except Exception:  # a heartbeat must never fail because GitOps could not queue a command
        logger.exception("GitOps could not reconcile instance %s", instance_id)
