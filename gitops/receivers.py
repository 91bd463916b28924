"""Signal receivers: each only enqueues a task (never the fleet's reconcile inside a web request)."""

from .models import DesiredEntry
from .services._base import enqueue


def reconcile_instance(sender, instance_id, **kwargs):
    """A new or changed instance is driven to its desired configuration, by a worker (after commit)."""
    from .tasks import reconcile_instance as task

    if DesiredEntry.objects.filter(present=True).exists():
        enqueue(task, instance_id)
