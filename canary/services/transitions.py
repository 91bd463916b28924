"""Transitions: every phase change, and what a person can do to a running deployment.

Each phase change is one conditional UPDATE (`transition`) inside the transaction of its side effects
(the next step, the reverts, the notification, the audit entry): of two workers, or a worker and a
person, racing for the same change exactly one matches the row; the other gets a ConflictError naming
the phase it found. Pause, resume and approve flip a flag the same way.
"""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.choices import NotificationLevel
from common.exceptions import ConflictError
from common.services import actor_label, audit_log, notify_admins
from fleet.choices import RunStatus
from fleet.licensing_store import require_feature
from fleet.services import command_run_revert

from .. import evaluation
from ..choices import Phase
from ..models import CanaryDeployment, CanaryTarget
from .base import FEATURE
from .scheduling import schedule_now

MAX_DETAILS = 100  # instances listed in failure_details; the reason gives the total


def transition(deployment: CanaryDeployment, new: str, **fields) -> None:
    """Move `deployment` from its current phase to `new` with a conditional UPDATE; ConflictError if it lost.

    Two workers (or a worker and a person) racing for the same transition: one UPDATE matches the row,
    the other matches nothing (PostgreSQL re-checks the WHERE after the first commits).
    """
    old = deployment.phase
    try:
        evaluation.check_transition(old, new)
    except evaluation.TransitionError as exc:
        raise ConflictError(str(exc), extra={"phase": old}) from exc
    if new in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED):
        fields.setdefault("finished_at", timezone.now())
        fields.setdefault("next_poll_at", None)
        fields.setdefault("next_round_at", None)
        fields.setdefault("paused", False)
        fields.setdefault("awaiting_approval", False)
    won = CanaryDeployment.objects.filter(pk=deployment.pk, phase=old).update(phase=new, **fields)
    if won != 1:
        current = CanaryDeployment.objects.filter(pk=deployment.pk).values_list("phase", flat=True).first()
        try:
            evaluation.check_transition(current, new)
        except evaluation.TransitionError as exc:
            raise ConflictError(str(exc), extra={"phase": current}) from exc
        raise ConflictError(
            "Another worker changed this deployment at the same moment; try again.", extra={"phase": current}
        )
    deployment.phase = new
    for key, value in fields.items():
        setattr(deployment, key, value)


def reached_targets(deployment):
    """Every instance the change was sent to (any step), with its run."""
    return list(
        deployment.targets.filter(step__isnull=False, excluded=False).select_related(
            "instance", "run", "revert_command"
        )
    )


def next_step(deployment: CanaryDeployment, *, actor, now, summary: str, forced: bool = False) -> None:
    """The current step passed (or a person forced it): start the next one, or the rollout to the rest.

    A forced promotion jumps straight to the rollout; the rollout then is observed, not judged.
    """
    stages = deployment.stages
    number = len(stages) if forced else deployment.current_step + 1
    if number <= deployment.current_step or number > len(stages):  # the first step was the whole scope
        transition(deployment, Phase.ROLLOUT, decided_at=now, forced=forced, awaiting_approval=False)
        audit_log(actor=actor, action="canary.promote", obj=deployment, details={"forced": forced, "summary": summary})
        finish(
            deployment,
            Phase.SUCCEEDED,
            actor=actor,
            note="The canary group was the whole scope: nothing left to roll out.",
        )
        return
    final = number == len(stages)
    fields = {
        "current_step": number,
        "step_started_at": now,
        "step_applied_at": None,
        "deadline_at": None,  # the step's clock starts when its last wave has been sent (apply.send_wave)
        "awaiting_approval": False,
        "next_poll_at": now,
    }
    if final:
        transition(deployment, Phase.ROLLOUT, decided_at=now, forced=forced, **fields)
        audit_log(
            actor=actor,
            action="canary.promote",
            obj=deployment,
            details={"forced": forced, "summary": summary, "step": number},
        )
    else:
        transition(deployment, Phase.CANARY, **fields)
        audit_log(actor=actor, action="canary.step", obj=deployment, details={"summary": summary, "step": number})
    schedule_now(deployment.pk)


def rollback(deployment: CanaryDeployment, *, actor, now, forced: bool, reason: str, details: dict) -> None:
    """→ rollback: revert exactly the deployed change on every instance it reached, in any step."""
    if len(details) > MAX_DETAILS:
        reason += f" ({len(details)} instances fall short; the first {MAX_DETAILS} are listed.)"
        details = dict(sorted(details.items())[:MAX_DETAILS])
    transition(
        deployment,
        Phase.ROLLBACK,
        decided_at=now,
        forced=forced,
        failure_reason=reason,
        failure_details=details,
        paused=False,
        awaiting_approval=False,
        next_round_at=None,
        next_poll_at=now,
    )
    reverted, changed = [], []
    for target in reached_targets(deployment):
        run = target.run
        if run is None:
            target.revert_note = "The change was not sent to this instance."
        elif run.status == RunStatus.FAILED:
            target.revert_note = "The change failed on this instance, so there is nothing to revert."
        else:
            # The inverse recorded on this run only: changes made to the instance independently stay.
            command = command_run_revert(actor=actor or f"canary:{deployment.pk}", run=run)
            if command is None:
                target.revert_note = "The change left nothing to revert on this instance."
            else:
                target.revert_command = command
                target.revert_note = f"Revert: {command}"
                reverted.append(target.instance.name)
        changed.append(target)
    CanaryTarget.objects.bulk_update(changed, ["revert_command", "revert_note"], batch_size=500)
    lines = [f"- {name}: {'; '.join(fails)}" for name, fails in sorted(details.items())[:20]]
    listed = ", ".join(reverted[:20]) + (f" and {len(reverted) - 20} more" if len(reverted) > 20 else "")
    ending = "The rollout will not happen." if deployment.current_step == 1 else "The deployment goes no further."
    notify_admins(
        title=f"Canary {deployment} {'rolled back by a person' if forced else 'failed and is rolling back'}",
        body="\n".join([reason, *lines, f"Reverting on: {listed or 'no instance'}. {ending}"]),
        url=deployment.get_absolute_url(),
        level=NotificationLevel.WARNING if forced else NotificationLevel.CRITICAL,
    )
    audit_log(
        actor=actor,
        action="canary.rollback",
        obj=deployment,
        details={"forced": forced, "reason": reason, "failed_criteria": details, "reverted_on": reverted[:200]},
    )
    schedule_now(deployment.pk)


def finish(deployment: CanaryDeployment, phase: str, *, actor=None, note: str = "", **fields) -> None:
    transition(deployment, phase, **fields)
    level = {Phase.SUCCEEDED: NotificationLevel.INFO, Phase.FAILED: NotificationLevel.CRITICAL}.get(phase)
    if phase == Phase.ROLLED_BACK:
        level = NotificationLevel.INFO if fields.get("rollback_verified") else NotificationLevel.CRITICAL
    notify_admins(
        title=f"Canary {deployment} {Phase(phase).label.lower()}",
        body=note,
        url=deployment.get_absolute_url(),
        level=level,
    )
    audit_log(actor=actor, action=f"canary.{phase}", obj=deployment, details={"note": note})


# --- What a person can do -------------------------------------------------------------------------


def _refuse_unless_allowed(deployment: CanaryDeployment, action: str) -> None:
    why = evaluation.action_refusal(
        action, phase=deployment.phase, paused=deployment.paused, awaiting_approval=deployment.awaiting_approval
    )
    if why:
        raise ConflictError(why, extra={"phase": deployment.phase})


@transaction.atomic
def canary_promote(*, actor, deployment: CanaryDeployment) -> CanaryDeployment:
    """Force promotion: send the change to the rest of the scope now, whatever the evaluation says."""
    require_feature(FEATURE)
    deployment.refresh_from_db()
    _refuse_unless_allowed(deployment, "promote")
    now = timezone.now()
    next_step(deployment, actor=actor, now=now, summary=f"Promoted by {actor_label(actor)}.", forced=True)
    return deployment


@transaction.atomic
def canary_rollback(*, actor, deployment: CanaryDeployment, reason: str = "") -> CanaryDeployment:
    """Force rollback: revert the change on every instance it reached. Allowed without the license, so a
    running deployment can always be stopped."""
    from ..selectors import latest_polls

    deployment.refresh_from_db()
    _refuse_unless_allowed(deployment, "rollback")
    text = f"Rolled back by {actor_label(actor)}" + (f": {reason.strip()}" if reason.strip() else ".")
    details = {
        poll.instance.name: [poll.reason]
        for poll in latest_polls(deployment).values()
        if not poll.healthy and poll.reason
    }
    rollback(deployment, actor=actor, now=timezone.now(), forced=True, reason=text, details=details)
    return deployment


def _flip(deployment, action, *, match: Q, actor, details=None, **fields) -> CanaryDeployment:
    deployment.refresh_from_db()
    _refuse_unless_allowed(deployment, action)
    won = CanaryDeployment.objects.filter(match, pk=deployment.pk, phase=deployment.phase).update(**fields)
    if not won:
        deployment.refresh_from_db()
        _refuse_unless_allowed(deployment, action)
        raise ConflictError("Another worker changed this deployment at the same moment; try again.")
    for key, value in fields.items():
        setattr(deployment, key, value)
    audit_log(actor=actor, action=f"canary.{action}", obj=deployment, details=details or {})
    schedule_now(deployment.pk)
    return deployment


@transaction.atomic
def canary_pause(*, actor, deployment: CanaryDeployment, reason: str = "") -> CanaryDeployment:
    """Hold the deployment where it is: no new instances get the change, no step is promoted, the clock of
    the max duration stops. Health keeps being polled; a failure past the threshold still rolls back.
    Allowed without the license (it only stops things)."""
    now = timezone.now()
    text = reason.strip()[:300] or f"Paused by {actor_label(actor)}."
    return _flip(
        deployment,
        "pause",
        match=Q(paused=False),
        actor=actor,
        details={"reason": text},
        paused=True,
        paused_at=now,
        pause_reason=text,
    )


@transaction.atomic
def canary_resume(*, actor, deployment: CanaryDeployment) -> CanaryDeployment:
    """Carry on after a pause; the max duration is extended by the time spent paused."""
    require_feature(FEATURE)
    deployment.refresh_from_db()
    now = timezone.now()
    fields = {"paused": False, "paused_at": None, "pause_reason": "", "next_poll_at": now}
    if deployment.paused_at and deployment.deadline_at:
        fields["deadline_at"] = deployment.deadline_at + (now - deployment.paused_at)
    held = int((now - deployment.paused_at).total_seconds()) if deployment.paused_at else 0
    return _flip(deployment, "resume", match=Q(paused=True), actor=actor, details={"paused_seconds": held}, **fields)


@transaction.atomic
def canary_approve(*, actor, deployment: CanaryDeployment) -> CanaryDeployment:
    """The step passed and waits for a person: start the next step (or the rollout to the rest)."""
    require_feature(FEATURE)
    CanaryDeployment.objects.select_for_update().filter(pk=deployment.pk).first()  # one approval at a time
    deployment.refresh_from_db()
    _refuse_unless_allowed(deployment, "approve")
    summary = f"Step {deployment.current_step} approved by {actor_label(actor)}."
    audit_log(actor=actor, action="canary.approve", obj=deployment, details={"step": deployment.current_step})
    next_step(deployment, actor=actor, now=timezone.now(), summary=summary)
    return deployment
