"""Heartbeat evaluations in batches: a changed heartbeat queues its instance (`queue`), and a worker
task claims up to BATCH queued instances at a time and evaluates them in one transaction (`drain`).

What it buys (bench/evaluation_worker.py, one worker process): a Celery task and a transaction per
heartbeat cost about 11 ms each in the worker (88 changed heartbeats/s); a batch shares both, so a
burst is evaluated at the rate of a sweep's chunk instead.

What serialises what:
- Claiming: `SELECT … FOR UPDATE SKIP LOCKED` and DELETE in the same transaction as the evaluation of
  what was claimed, so two workers never claim the same instance and a worker that dies rolls back
  and leaves its instances queued. (A heartbeat re-queuing an instance that is being evaluated waits
  for that batch to commit, then queues it again.)
- Evaluating: the per-instance locks as everywhere (locks.lock_instances); a batch, a sweep and a
  direct evaluation of one instance take turns per instance and each reads after its lock.
- Sending tasks: `queue` sends one only when its row is the oldest one queued (recently), by
  (queued_at, instance id): one order every process sees alike. An older row is being drained (that
  drain claims again after its commit, so it sees our committed row) or is waiting for a task its
  own oldest row sent (which drains ours with it). Two heartbeats queued at the same moment each see
  the other, and exactly one of them is the older: "send only when nobody else is queued" let both
  stay silent, stranding both until the sweep. A row older than STUCK_AFTER (its worker died, its
  task was lost) no longer counts, and the 5-minute sweep evaluates everything anyway.
"""

import time
from collections import Counter
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import PendingEvaluation
from . import run

BATCH = 200
STUCK_AFTER = timedelta(seconds=10)
# A drain that has run this long sends its successor and returns (Celery's time limit is 300 s).
DRAIN_FOR = 30.0


def queue(instance_id: int) -> None:
    """Queue one instance's evaluation (after its heartbeat committed); send a drain task if needed."""
    from ..tasks import evaluate_pending_task

    now = timezone.now()
    try:
        PendingEvaluation.objects.bulk_create(
            [PendingEvaluation(instance_id=instance_id, queued_at=now)], ignore_conflicts=True
        )
    except IntegrityError:  # the instance was deleted meanwhile: nothing to evaluate
        return
    if first_in_line(instance_id, now):
        transaction.on_commit(lambda: evaluate_pending_task.delay())


def first_in_line(instance_id: int, now) -> bool:
    """Whether this instance's queued row is the oldest recent one, so its heartbeat sends the task."""
    mine = PendingEvaluation.objects.filter(pk=instance_id).values_list("queued_at", flat=True).first()
    if mine is None:  # already claimed and evaluated: nothing left to send for
        return False
    older = Q(queued_at__lt=mine) | Q(queued_at=mine, pk__lt=instance_id)
    return not PendingEvaluation.objects.filter(older, queued_at__gt=now - STUCK_AFTER).exists()


def drain(*, batch: int = BATCH) -> dict:
    """Claim and evaluate queued instances, batch by batch, until none is left."""
    from ..tasks import evaluate_pending_task

    totals: Counter = Counter()
    started = time.monotonic()
    while True:
        with transaction.atomic():
            ids = _claim(batch)
            if not ids:
                break
            totals.update(run.evaluate(ids, recount_later=True))
        if time.monotonic() - started > DRAIN_FOR:
            evaluate_pending_task.delay()
            break
    return dict(totals)


def _claim(limit: int) -> list[int]:
    queued = PendingEvaluation.objects.select_for_update(skip_locked=True).order_by("pk")
    ids = list(queued.values_list("pk", flat=True)[:limit])
    if ids:
        PendingEvaluation.objects.filter(pk__in=ids).delete()
    return ids
