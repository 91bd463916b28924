"""When each deployment is next looked at: a due-time column and one task enqueued for exactly that time.

`next_poll_at` is the earliest thing due for a deployment (its next round on the grid, or the next look
at its command runs). Whoever moves it enqueues `advance_deployment` with `eta` = that time, so a round
starts when it is due, not at a scheduler tick. The conditional UPDATE that moves it is the
de-duplication: a caller that finds the value already set leaves the enqueuing to whoever set it, and
the task that was enqueued for the stored time re-arms the next one (`mine`). Tasks are lost with a
killed worker; the beat task `advance_due_deployments` (every 5 s) is the safety net that re-enqueues
deployments overdue by more than OVERDUE_AFTER.
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


def schedule(pk: int, wake, *, mine: bool = False) -> bool:
    """Make `wake` the deployment's next look; enqueue a task for it unless one is already enqueued."""
    updated = (
        CanaryDeployment.objects.filter(pk=pk, phase__in=ACTIVE_PHASES)
        .exclude(next_poll_at=wake)
        .update(next_poll_at=wake)
    )
    if updated or mine:
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
