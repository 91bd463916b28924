"""When each deployment is next looked at: a due-time column and one task enqueued for exactly that time.

`next_poll_at` is the slot: the time the deployment's pending task is enqueued for (`eta`), so a round
starts when it is due, not at a scheduler tick. Only whoever moves the slot enqueues, with a conditional
UPDATE (`schedule`): moving it earlier (something is due sooner: a finished run, a person's action), or
refilling it when its time has come (the task that ran for it, or one lost with a worker). A slot already
set for a time soon enough is left alone, so tasks never multiply; a task whose slot was moved earlier
runs once more, harmlessly, and ends without enqueuing. The beat task `advance_due_deployments` (every
5 s) is the safety net: a slot overdue by more than OVERDUE_AFTER lost its task (a killed worker), and
the deployment is handed to a new one.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..choices import ACTIVE_PHASES, Phase
from ..models import CanaryDeployment

logger = logging.getLogger(__name__)

EARLY_TOLERANCE = 0.5  # seconds: a task that starts this early waits for its due time
OVERDUE_AFTER = 1.0  # seconds: the beat re-enqueues deployments this late (their task was lost)
ETA_HORIZON = 300  # seconds: farther than this, a task wakes 60 s before and re-arms (Redis visibility timeout)


def enqueue(pk: int, when) -> None:
    """Enqueue `advance_deployment(pk)` for `when`, after the current transaction commits."""

    def send():
        from ..tasks import advance_deployment

        eta = when
        if (when - timezone.now()).total_seconds() > ETA_HORIZON:
            eta = when - timedelta(seconds=60)
        try:
            advance_deployment.apply_async(
                args=[pk], kwargs={"due": when.timestamp()}, eta=eta, expires=eta + timedelta(seconds=60)
            )
        except Exception:  # noqa: BLE001 - the broker is down: the beat safety net finds the deployment later
            logger.warning("canary %s: could not enqueue its next step; the beat will pick it up", pk, exc_info=True)

    transaction.on_commit(send)


def schedule(pk: int, wake, *, now=None) -> bool:
    """Make `wake` the deployment's next look, enqueuing its task, unless a task already comes soon enough."""
    now = now or timezone.now()
    free = Q(next_poll_at__isnull=True) | Q(next_poll_at__gt=wake) | Q(next_poll_at__lte=now)
    updated = CanaryDeployment.objects.filter(free, pk=pk, phase__in=ACTIVE_PHASES).update(next_poll_at=wake)
    if updated:
        enqueue(pk, wake)
    return bool(updated)


def schedule_now(pk: int) -> None:
    now = timezone.now()
    CanaryDeployment.objects.filter(pk=pk).update(next_poll_at=now)
    enqueue(pk, now)


def canary_run_finished(*, run_id: int) -> int:
    """A command run finished: make the deployments waiting on it due now. Returns how many.

    Debounced: a deployment already due within 0.2 s is left alone, so a rollout of thousands of runs
    does not enqueue thousands of tasks.
    """
    waiting = Q(targets__run_id=run_id) | Q(targets__revert_command__runs__id=run_id)
    phases = (Phase.CANARY, Phase.ROLLOUT, Phase.ROLLBACK)
    ids = list(CanaryDeployment.objects.filter(waiting, phase__in=phases).values_list("pk", flat=True).distinct())
    now = timezone.now()
    moved = 0
    for pk in ids:
        later = Q(next_poll_at__isnull=True) | Q(next_poll_at__gt=now + timedelta(seconds=0.2))
        if CanaryDeployment.objects.filter(later, pk=pk, phase__in=phases).update(next_poll_at=now):
            enqueue(pk, now)
            moved += 1
    return moved


def due_deployment_ids(*, now=None, overdue_by: float = 0.0) -> list[int]:
    """Active deployments whose next look is due (by more than `overdue_by` seconds: the beat's safety net)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=overdue_by)
    return list(
        CanaryDeployment.objects.filter(phase__in=ACTIVE_PHASES, next_poll_at__lte=cutoff)
        .order_by("next_poll_at")
        .values_list("pk", flat=True)
    )
