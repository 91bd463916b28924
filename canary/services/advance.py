"""The scheduler's advance: one look at one deployment, run by the task enqueued for its due time.

canary / rollout: choose the step's instances if not done yet, send waves, start the evaluation when
  every run finished (or roll back when they did not finish within the max duration);
evaluation / rollout / canary of a later step: the round on the grid, judged as its state says
  (canary.evaluation.decide_round);
rollback: once every revert finished, verification rounds.
Safe to call from several workers at once and after a restart: every step re-reads the database and
claims what it does with a conditional UPDATE or under the row lock. Ends by scheduling the next look.
"""

import logging
import time
from datetime import timedelta

from django.utils import timezone

from common.exceptions import ConflictError

from ..choices import ACTIVE_PHASES, Phase
from ..models import CanaryDeployment
from . import apply, rounds
from .base import recheck_seconds
from .scheduling import EARLY_TOLERANCE, enqueue, schedule

logger = logging.getLogger(__name__)


def canary_advance(*, deployment_id: int, now=None, due: float | None = None) -> str | None:
    """Take whatever step of one deployment is due; returns its phase afterwards.

    `now` lets tests move the clock; `due` is the time the calling task was enqueued for (a task that
    starts a little early waits for it, so rounds start on time).
    """
    deployment = CanaryDeployment.objects.filter(pk=deployment_id).first()
    if deployment is None or deployment.phase not in ACTIVE_PHASES:
        return deployment.phase if deployment else None
    if now is None and due is not None:
        early = due - time.time()
        if early > EARLY_TOLERANCE:  # woken ahead of a far slot (scheduling.ETA_HORIZON): re-arm for it
            if deployment.next_poll_at and abs(deployment.next_poll_at.timestamp() - due) < 0.001:
                enqueue(deployment_id, deployment.next_poll_at)
            return deployment.phase
        if early > 0:
            time.sleep(early)
    now = now or timezone.now()
    wake = None
    try:
        wake = _step(deployment_id, now=now)
    except ConflictError as exc:
        # Someone else (another worker, a person) moved it first: nothing to do.
        logger.info("canary %s: %s", deployment_id, exc.message)
    phase, next_round = CanaryDeployment.objects.filter(pk=deployment_id).values_list("phase", "next_round_at").first()
    if phase in ACTIVE_PHASES:
        after = timezone.now()
        times = [t for t in (wake, next_round if phase != Phase.ROLLBACK else None) if t is not None]
        when = min(times) if times else after + timedelta(seconds=recheck_seconds(deployment))
        schedule(deployment_id, max(when, after + timedelta(seconds=0.05)), now=after)
    return phase


def _step(deployment_id: int, *, now):
    """Returns when the runs should be looked at again (None: only the grid matters)."""
    deployment = CanaryDeployment.objects.get(pk=deployment_id)
    recheck = now + timedelta(seconds=recheck_seconds(deployment))
    if deployment.phase == Phase.ROLLBACK:
        result = rounds.verify_rollback(deployment, now=now)
        return recheck if result == "runs" else result
    if _applying(deployment):
        _apply(deployment, now=now)
        current = CanaryDeployment.objects.get(pk=deployment_id)
        if _applying(current):
            rounds.run_round(deployment_id, now=now)  # the watch over earlier steps goes on meanwhile
            return recheck
        return None  # just applied: its first round is due now, in a task of its own
    if rounds.run_round(deployment_id, now=now):
        current = CanaryDeployment.objects.get(pk=deployment_id)
        if _applying(current):  # the round promoted the next step: send it now, not at the next look
            _apply(current, now=now)
            return recheck
    return None


def _applying(deployment) -> bool:
    return deployment.phase in (Phase.CANARY, Phase.ROLLOUT) and deployment.step_applied_at is None


def _apply(deployment, *, now) -> None:
    if apply.apply_progress(deployment.pk, now=now) == "choose":
        number = deployment.current_step
        selection = apply.choose(deployment)  # probes: outside any transaction
        apply.commit_selection(deployment.pk, selection, number=number, now=now)
        apply.apply_progress(deployment.pk, now=now)
