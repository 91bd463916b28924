"""Applying a step: choosing its instances, sending the change in waves of at most `max_unavailable`,
and noticing when every run of the step has finished.

Choosing runs the pre-flight probes, so it happens outside any transaction; what it chose is written
under the deployment's row lock (`select_for_update`; SQLite's IMMEDIATE transactions serialise the
same way), which also serialises sending waves: two workers never send the same wave.
"""

from datetime import timedelta

from django.db import transaction

from common.services import audit_log
from fleet.choices import CommandSource, RunStatus, ScopeKind
from fleet.models import CommandRun
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope
from fleet.services import command_create

from ..choices import ExclusionKind, Phase, TargetRole
from ..models import CanaryDeployment, CanaryTarget
from . import transitions
from .base import FINISHED
from .preflight import Selection, select_members


def stage_label(deployment: CanaryDeployment, number: int) -> str:
    count = len(deployment.stages)
    if number == 1:
        return "canary group"
    if number == count:
        return "rollout"
    return f"step {number} of {count}"


def step_targets(deployment: CanaryDeployment, number: int | None = None) -> list[CanaryTarget]:
    number = deployment.current_step if number is None else number
    return list(
        deployment.targets.filter(step=number, excluded=False)
        .select_related("instance", "run")
        .order_by("instance__name")
    )


def choose(deployment: CanaryDeployment) -> Selection:
    """Pick the instances of the current step from the scope as it is now (probes: call outside transactions)."""
    stages = deployment.stages
    number = deployment.current_step
    reached = set(deployment.targets.filter(step__isnull=False).values_list("instance_id", flat=True))
    return select_members(
        scope_instances=list(instances_in_scope(deployment.scope).order_by("name")),
        step=stages[number - 1],
        final=number == len(stages) and number > 1,
        reached_ids=reached,
        kind=deployment.command_kind,
        params=deployment.command_params,
        criteria=deployment.criteria,
        health_path=deployment.health_path,
        timeout=deployment.probe_timeout,
    )


def record_selection(deployment: CanaryDeployment, number: int, selection: Selection) -> list[CanaryTarget]:
    """Write who step `number` reaches, passed over or excluded. Re-used rows: a candidate passed over in one
    step may be chosen by a later one."""
    count = len(deployment.stages)
    role = TargetRole.CANARY if number == 1 else (TargetRole.ROLLOUT if number == count else TargetRole.STEP)
    existing = {t.instance_id: t for t in deployment.targets.all()}
    rows = []
    for inst in selection.members:
        why = selection.unjudged.get(inst, "")
        rows.append(
            (
                inst,
                {
                    "step": number,
                    "role": role,
                    "excluded": False,
                    "exclusion_kind": "",
                    "exclusion_reason": f"not judged: {why}"[:300] if why else "",
                    "judged": not why,
                },
            )
        )
    for inst, why in selection.passed_over:
        text = why if number == 1 else f"step {number}: {why}"
        rows.append(
            (
                inst,
                {
                    "step": None,
                    "role": role,
                    "excluded": True,
                    "exclusion_kind": ExclusionKind.PREFLIGHT,
                    "exclusion_reason": text[:300],
                },
            )
        )
    for inst, why in selection.lacking:
        rows.append(
            (
                inst,
                {
                    "step": None,
                    "role": role,
                    "excluded": True,
                    "exclusion_kind": ExclusionKind.MISSING_APP,
                    "exclusion_reason": why[:300],
                },
            )
        )
    created, updated = [], []
    for inst, values in rows:
        target = existing.get(inst.pk)
        if target is None:
            created.append(CanaryTarget(deployment=deployment, instance=inst, **values))
        elif target.step is None:  # never overwrite an instance the change already reached
            for key, value in values.items():
                setattr(target, key, value)
            updated.append(target)
    CanaryTarget.objects.bulk_create(created, batch_size=1000)
    fields = ["step", "role", "excluded", "exclusion_kind", "exclusion_reason", "judged"]
    CanaryTarget.objects.bulk_update(updated, fields, batch_size=500)
    return step_targets(deployment, number)


def send_wave(deployment: CanaryDeployment, targets, *, actor, now):
    """Queue the change on the next instances of the step, keeping at most `max_unavailable` changing at once.

    The command targets exactly those instances (its label names them). When the last wave of the step
    has gone out, the step's max duration starts counting. Returns the command, or None.
    """
    unsent = [t for t in targets if t.run_id is None]
    if deployment.paused or not unsent:
        return None
    changing = sum(t.run is not None and t.run.status not in FINISHED for t in targets)
    room = len(unsent) if deployment.max_unavailable is None else deployment.max_unavailable - changing
    if room <= 0:
        return None
    wave = unsent[:room]
    waves_before = len({t.run.command_id for t in targets if t.run is not None})
    label = stage_label(deployment, deployment.current_step) + (f", wave {waves_before + 1}" if waves_before else "")
    ids = tuple(t.instance_id for t in wave)
    command = command_create(
        actor=actor,
        kind=deployment.command_kind,
        params=deployment.command_params,
        scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=ids),
        source=CommandSource.CANARY,
        instances=[t.instance for t in wave],
        description=f"Canary #{deployment.pk}: {label}",
    )
    runs = {r.instance_id: r for r in command.runs.all()}
    for target in wave:
        target.run = runs[target.instance_id]
    CanaryTarget.objects.bulk_update(wave, ["run"], batch_size=500)
    fields = {}
    if len(wave) == len(unsent):
        fields["deadline_at"] = now + timedelta(seconds=deployment.max_duration_seconds)
    if deployment.current_step == 1 and deployment.canary_command_id is None:
        fields["canary_command"] = command
    elif deployment.current_step == len(deployment.stages) and deployment.rollout_command_id is None:
        fields["rollout_command"] = command
    if fields:
        CanaryDeployment.objects.filter(pk=deployment.pk).update(**fields)
        for key, value in fields.items():
            setattr(deployment, key, value)
    return command


def apply_progress(deployment_id: int, *, now) -> str:
    """One look at the current step's runs: choose its instances if not done yet, send the next wave,
    start the evaluation once every run finished, or roll back when they did not finish in time.

    Returns "choose" when the step's instances must be chosen first (the caller probes, then calls
    `commit_selection`), else "".
    """
    with transaction.atomic():
        deployment = CanaryDeployment.objects.select_for_update().get(pk=deployment_id)
        if deployment.phase not in (Phase.CANARY, Phase.ROLLOUT) or deployment.step_applied_at:
            return ""
        targets = step_targets(deployment)
        if not targets and not deployment.targets.filter(step=deployment.current_step).exists():
            return "choose"
        send_wave(deployment, targets, actor=None, now=now)
        fresh = CommandRun.objects.only("status").in_bulk([t.run_id for t in targets if t.run_id])
        pending = [t for t in targets if t.run_id is None or fresh[t.run_id].status not in FINISHED]
        if not pending:
            _applied(deployment, targets, fresh, now=now)
        elif deployment.deadline_at and now >= deployment.deadline_at and not deployment.paused:
            _not_applied_in_time(deployment, pending, now=now)
    return ""


def commit_selection(deployment_id: int, selection: Selection, *, number: int, now) -> None:
    """Write a step's chosen instances (unless another worker did first), or skip a step left with none."""
    with transaction.atomic():
        deployment = CanaryDeployment.objects.select_for_update().get(pk=deployment_id)
        if deployment.current_step != number or deployment.phase not in (Phase.CANARY, Phase.ROLLOUT):
            return
        if deployment.targets.filter(step=number).exists():
            return
        record_selection(deployment, number, selection)
        if selection.members:
            audit_log(
                actor=None,
                action="canary.step_start",
                obj=deployment,
                details={
                    "step": number,
                    "instances": len(selection.members),
                    "passed_over": {i.name: why for i, why in selection.passed_over[:50]},
                },
            )
            return
        # Nothing left for this step (the scope shrank, or every candidate was passed over).
        if number == len(deployment.stages):
            transitions.finish(deployment, Phase.SUCCEEDED, note="Every instance in scope already has the change.")
        else:
            CanaryDeployment.objects.filter(pk=deployment.pk, current_step=number).update(
                current_step=number + 1, step_started_at=now
            )
            if number + 1 == len(deployment.stages):
                deployment.current_step = number + 1
                transitions.transition(deployment, Phase.ROLLOUT, decided_at=now)


def _applied(deployment, targets, runs, *, now) -> None:
    """Every run of the step finished: evaluate it (a forced rollout simply ends, by its runs' outcome)."""
    if deployment.phase == Phase.ROLLOUT and deployment.forced:
        failed = [t for t in targets if runs[t.run_id].status == RunStatus.FAILED]
        finish_rollout(deployment, targets, failed)
        return
    fields = {"step_applied_at": now, "evaluation_started_at": now, "next_round_at": now, "next_poll_at": now}
    if deployment.phase == Phase.CANARY:
        transitions.transition(deployment, Phase.EVALUATION, **fields)
        audit_log(
            actor=None,
            action="canary.evaluate",
            obj=deployment,
            details={"step": deployment.current_step, "instances": len(targets)},
        )
    else:
        CanaryDeployment.objects.filter(pk=deployment.pk, phase=Phase.ROLLOUT).update(**fields)


def finish_rollout(deployment, targets, failed) -> None:
    """The rollout is over: succeeded, or failed naming the instances where the change did not apply."""
    if failed:
        reason = f"The rollout failed on {len(failed)} of {len(targets)} instances; each is listed with its error."
        transitions.finish(
            deployment,
            Phase.FAILED,
            note=reason,
            failure_reason=reason,
            failure_details={t.instance.name: [f"rollout: {t.run.error or 'failed'}"] for t in failed[:100]},
        )
    else:
        transitions.finish(
            deployment,
            Phase.SUCCEEDED,
            note=f"The change is on all {len(targets)} rollout instances and every earlier step.",
        )


def _not_applied_in_time(deployment, pending, *, now) -> None:
    names = {t.instance.name: ["change: not applied within the max duration"] for t in pending}
    reason = (
        f"The change was not applied to every instance of the {stage_label(deployment, deployment.current_step)} "
        f"within the max duration ({deployment.max_duration_seconds} s); still pending on {len(pending)}."
    )
    transitions.rollback(deployment, actor=None, now=now, forced=False, reason=reason, details=names)
