"""Every write of a canary deployment. The HTML views, the API, the tasks and the admin call these.

State machine (see evaluation.TRANSITIONS): canary → evaluation → rollout | rollback → succeeded |
rolled_back | failed. Each phase change is one conditional UPDATE (`_transition`), so of two workers
racing to promote or roll back exactly one wins; the loser gets a ConflictError with the reason.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from common.choices import NotificationLevel
from common.exceptions import ApplicationError, ConflictError
from common.services import audit_log, notify_admins
from fleet import commands as command_logic
from fleet.choices import CommandSource, InstanceStatus, RunStatus
from fleet.licensing_store import require_feature
from fleet.models import CommandRun, Instance
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope
from fleet.services import command_create, command_run_revert, scope_apply

from . import evaluation, probes
from .choices import ACTIVE_PHASES, Criterion, Phase, PollPurpose, PreflightPolicy, SelectionKind, TargetRole
from .models import CanaryDeployment, CanaryTarget, EvaluationRound, HealthPoll

logger = logging.getLogger(__name__)

FEATURE = "canary_deployments"
FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED)


def probe_timeout() -> float:
    return float(getattr(settings, "CANARY_PROBE_TIMEOUT", 2.0))


def recheck_seconds(deployment: CanaryDeployment) -> int:
    """How soon to look again at command runs (canary, rollout and rollback phases)."""
    return max(1, min(int(getattr(settings, "CANARY_RECHECK_SECONDS", 5)), deployment.check_interval_seconds))


def verify_rounds() -> int:
    return int(getattr(settings, "CANARY_VERIFY_ROUNDS", 3))


# --- Violations hook --------------------------------------------------------------------------


def violations_provider():
    """(fn, "") when the "no new violations" criterion can be checked, else (None, why not).

    The function comes from settings.CANARY_VIOLATIONS_PROVIDER so canary never imports governance.
    """
    path = getattr(settings, "CANARY_VIOLATIONS_PROVIDER", "") or ""
    if not path:
        return None, "no violations provider is configured (CANARY_VIOLATIONS_PROVIDER is empty)"
    try:
        return import_string(path), ""
    except ImportError:
        return None, f"the violations provider {path} is not available"


def _violation_keys(instance_ids: list[int]) -> dict[int, set]:
    fn, why = violations_provider()
    if fn is None:
        raise ApplicationError(why)
    result = fn(list(instance_ids)) or {}
    return {int(k): set(v) for k, v in result.items()}


# --- Pre-flight and the canary/rollout sets ------------------------------------------------------


@dataclass
class CanaryPlan:
    """Which instances are the canary, which pre-flight excluded (and why), and which get the rollout."""

    scope_size: int
    canary_size: int
    canary: list = field(default_factory=list)
    excluded: list = field(default_factory=list)  # [(Instance, reason)]
    rollout: list = field(default_factory=list)
    blocked: str = ""  # why the start is refused ("" when it may start)


def health_url(instance: Instance, path: str) -> str:
    return f"{instance.health_base_url}{path}" if instance.address else ""


def probe_instances(instances, path: str) -> dict[int, probes.ProbeResult]:
    """Probe every instance's health URL in one concurrent round. An instance without an address is unhealthy."""
    with_address = [i for i in instances if i.address]
    results = probes.poll_many([health_url(i, path) for i in with_address], timeout=probe_timeout())
    by_id = {inst.pk: res for inst, res in zip(with_address, results, strict=True)}
    for inst in instances:
        if not inst.address:
            by_id[inst.pk] = probes.ProbeResult("", False, None, None, "the instance has no health address")
    return by_id


def _offline_reason(instance: Instance) -> str:
    if instance.status == InstanceStatus.ONLINE:
        return ""
    if instance.status == InstanceStatus.PENDING:
        return "has not sent a heartbeat yet"
    seen = f" (last heartbeat {instance.last_seen_at:%Y-%m-%d %H:%M:%S} UTC)" if instance.last_seen_at else ""
    return f"offline{seen}"


def canary_plan(
    *,
    scope: Scope,
    selection: str,
    percentage: int | None = None,
    instances=(),
    criteria=(),
    health_path: str = "/health",
    preflight_policy: str = PreflightPolicy.EXCLUDE,
    probe: bool = True,
) -> CanaryPlan:
    """Work out the canary and rollout sets, running the pre-flight checks. Writes nothing.

    Candidates are the named instances, or the scope ordered by name for a percentage. Offline
    candidates, and with the health check as a criterion unhealthy ones, are passed over: with the
    `exclude` policy they are listed with the reason and the next healthy instance takes their place;
    with `block` any such candidate refuses the start. No healthy candidate at all always refuses it.
    """
    in_scope = list(instances_in_scope(scope).order_by("name"))
    scope_ids = {i.pk for i in in_scope}
    if selection == SelectionKind.INSTANCES:
        candidates = sorted(instances, key=lambda i: i.name)
        outside = [i.name for i in candidates if i.pk not in scope_ids]
        if outside:
            raise ApplicationError(
                f"Canary instances must be in the deployment's scope; not in it: {', '.join(outside)}."
            )
        size = len(candidates)
    else:
        candidates = in_scope
        size = evaluation.canary_size(percentage or 0, len(in_scope))
    plan = CanaryPlan(scope_size=len(in_scope), canary_size=size)
    if not in_scope:
        plan.blocked = "The scope matches no instances: there is nothing to deploy to."
        return plan
    problems = {i: _offline_reason(i) for i in candidates if _offline_reason(i)}
    if probe and Criterion.HEALTH_CHECK in criteria:
        # Only as many candidates as could be needed are probed: all of them when some are unhealthy.
        online = [i for i in candidates if i not in problems]
        for inst_id, result in probe_instances(online, health_path).items():
            if not result.healthy:
                inst = next(i for i in online if i.pk == inst_id)
                problems[inst] = f"unhealthy before the change: {result.reason}"
    plan.canary, plan.excluded = evaluation.choose_canary(candidates, size, problems)
    canary_ids = {i.pk for i in plan.canary}
    plan.rollout = [i for i in in_scope if i.pk not in canary_ids]
    listed = "; ".join(f"{i.name}: {why}" for i, why in plan.excluded)
    if not plan.canary:
        plan.blocked = f"No canary candidate is online and healthy, so the canary cannot start ({listed})."
    elif preflight_policy == PreflightPolicy.BLOCK and plan.excluded:
        plan.blocked = f"Pre-flight found unhealthy or offline canary candidates and the policy is to block: {listed}."
    return plan


# --- Create ------------------------------------------------------------------------------------


def _validate(
    *,
    kind,
    params,
    selection,
    percentage,
    instances,
    criteria,
    success_threshold,
    health_path,
    check_interval,
    max_duration,
    consecutive_healthy,
    preflight_policy,
) -> dict:
    try:
        clean_params = command_logic.validate_params(kind, params)
    except command_logic.CommandParamsError as exc:
        raise ApplicationError(f"The change is not valid: {exc}") from exc
    if selection not in SelectionKind.values:
        raise ApplicationError(f"Unknown canary selection '{selection}': use percentage or instances.")
    if selection == SelectionKind.PERCENTAGE and not (percentage and 1 <= percentage <= 100):
        raise ApplicationError("The canary percentage must be between 1 and 100.")
    if selection == SelectionKind.INSTANCES and not instances:
        raise ApplicationError("Choose at least one canary instance.")
    criteria = list(dict.fromkeys(criteria or []))
    if not criteria:
        raise ApplicationError("Choose at least one success criterion.")
    unknown = [c for c in criteria if c not in Criterion.values]
    if unknown:
        raise ApplicationError(f"Unknown criterion '{unknown[0]}': use {', '.join(Criterion.values)}.")
    if Criterion.NO_NEW_VIOLATIONS in criteria:
        fn, why = violations_provider()
        if fn is None:
            raise ApplicationError(f"The 'no new violations' criterion is unavailable: {why}.")
    if not 1 <= success_threshold <= 100:
        raise ApplicationError("The success threshold must be between 1 and 100 %.")
    if not health_path.startswith("/") or len(health_path) > 200 or any(c.isspace() for c in health_path):
        raise ApplicationError("The health check URL must be a path starting with / (e.g. /health), without spaces.")
    if not 1 <= check_interval <= 3600:
        raise ApplicationError("The check interval must be between 1 second and 1 hour.")
    if not check_interval <= max_duration <= 7 * 24 * 3600:
        raise ApplicationError("The max duration must be at least the check interval and at most 7 days.")
    if not 1 <= consecutive_healthy <= 100:
        raise ApplicationError("Consecutive healthy polls must be between 1 and 100.")
    if (consecutive_healthy - 1) * check_interval > max_duration:
        raise ApplicationError(
            f"{consecutive_healthy} consecutive healthy polls every {check_interval} s cannot fit in the max duration "
            f"of {max_duration} s: the canary could never pass."
        )
    if preflight_policy not in PreflightPolicy.values:
        raise ApplicationError("The pre-flight policy must be exclude or block.")
    return {"params": clean_params, "criteria": criteria}


def canary_create(
    *,
    actor,
    kind: str,
    params: dict,
    scope: Scope,
    selection: str = SelectionKind.PERCENTAGE,
    percentage: int | None = None,
    instances=(),
    criteria=(Criterion.HEALTH_CHECK,),
    success_threshold: int = 100,
    health_path: str = "/health",
    check_interval: int = 30,
    max_duration: int = 600,
    consecutive_healthy: int = 1,
    preflight_policy: str = PreflightPolicy.EXCLUDE,
    name: str = "",
) -> CanaryDeployment:
    """Start a canary deployment: pre-flight, then send the change to the canary instances.

    Nothing is written when validation or pre-flight refuses (ApplicationError with the reason).
    The health probes of the pre-flight run before the transaction opens.
    """
    require_feature(FEATURE)
    clean = _validate(
        kind=kind,
        params=params,
        selection=selection,
        percentage=percentage,
        instances=instances,
        criteria=criteria,
        success_threshold=success_threshold,
        health_path=health_path,
        check_interval=check_interval,
        max_duration=max_duration,
        consecutive_healthy=consecutive_healthy,
        preflight_policy=preflight_policy,
    )
    plan = canary_plan(
        scope=scope,
        selection=selection,
        percentage=percentage,
        instances=instances,
        criteria=clean["criteria"],
        health_path=health_path,
        preflight_policy=preflight_policy,
    )
    if plan.blocked:
        raise ApplicationError(
            plan.blocked, extra={"excluded": [{"instance": i.name, "reason": r} for i, r in plan.excluded]}
        )
    baseline = {}
    if Criterion.NO_NEW_VIOLATIONS in clean["criteria"]:
        try:
            keys = _violation_keys([i.pk for i in plan.canary])
        except Exception as exc:  # the provider belongs to another app: any failure is "unavailable"
            raise ApplicationError(f"Could not read the open violations of the canary instances: {exc}") from exc
        baseline = {str(i.pk): sorted(map(str, keys.get(i.pk, ()))) for i in plan.canary}
    now = timezone.now()
    with transaction.atomic():
        deployment = CanaryDeployment.objects.create(
            name=name.strip()[:120],
            command_kind=kind,
            command_params=clean["params"],
            selection=selection,
            canary_percentage=percentage if selection == SelectionKind.PERCENTAGE else None,
            criteria=clean["criteria"],
            success_threshold=success_threshold,
            health_path=health_path,
            check_interval_seconds=check_interval,
            max_duration_seconds=max_duration,
            consecutive_healthy=consecutive_healthy,
            preflight_policy=preflight_policy,
            phase=Phase.CANARY,
            created_by=actor if getattr(actor, "pk", None) else None,
            started_at=now,
            deadline_at=now + timedelta(seconds=max_duration),
            violations_baseline=baseline,
        )
        scope_apply(deployment, scope)
        if selection == SelectionKind.INSTANCES:
            deployment.canary_requested.set(instances)
        command = command_create(
            actor=actor,
            kind=kind,
            params=clean["params"],
            scope=scope,
            source=CommandSource.CANARY,
            instances=plan.canary,
            description=f"Canary #{deployment.pk}: canary group",
        )
        runs = {r.instance_id: r for r in command.runs.all()}
        CanaryTarget.objects.bulk_create(
            [
                CanaryTarget(deployment=deployment, instance=i, role=TargetRole.CANARY, run=runs[i.pk])
                for i in plan.canary
            ]
            + [
                CanaryTarget(
                    deployment=deployment, instance=i, role=TargetRole.CANARY, excluded=True, exclusion_reason=why[:300]
                )
                for i, why in plan.excluded
            ]
        )
        deployment.canary_command = command
        deployment.next_poll_at = now + timedelta(seconds=recheck_seconds(deployment))
        deployment.save(update_fields=["canary_command", "next_poll_at"])
        audit_log(
            actor=actor,
            action="canary.create",
            obj=deployment,
            details={
                "change": command_logic.describe(kind, clean["params"]),
                "canary": [i.name for i in plan.canary],
                "excluded": {i.name: why for i, why in plan.excluded},
                "planned_rollout": len(plan.rollout),
                "criteria": clean["criteria"],
                "threshold": success_threshold,
            },
        )
    return deployment


# --- Transitions -------------------------------------------------------------------------------


def _transition(deployment: CanaryDeployment, new: str, **fields) -> None:
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


def _canary_targets(deployment):
    return list(
        deployment.targets.filter(role=TargetRole.CANARY, excluded=False).select_related(
            "instance", "run", "revert_command"
        )
    )


def _promote(deployment: CanaryDeployment, *, actor, now, forced: bool, summary: str) -> None:
    """Canary/evaluation → rollout: send the change to the rest of the scope (resolved now)."""
    _transition(
        deployment,
        Phase.ROLLOUT,
        decided_at=now,
        forced=forced,
        next_poll_at=now + timedelta(seconds=recheck_seconds(deployment)),
    )
    canary_ids = set(
        deployment.targets.filter(role=TargetRole.CANARY, excluded=False).values_list("instance_id", flat=True)
    )
    rollout = [i for i in instances_in_scope(deployment.scope).order_by("name") if i.pk not in canary_ids]
    audit_log(
        actor=actor,
        action="canary.promote",
        obj=deployment,
        details={"forced": forced, "summary": summary, "rollout": len(rollout)},
    )
    if not rollout:
        _finish(
            deployment,
            Phase.SUCCEEDED,
            actor=actor,
            note="The canary group was the whole scope: nothing left to roll out.",
        )
        return
    command = command_create(
        actor=actor,
        kind=deployment.command_kind,
        params=deployment.command_params,
        scope=deployment.scope,
        source=CommandSource.CANARY,
        instances=rollout,
        description=f"Canary #{deployment.pk}: rollout",
    )
    CanaryDeployment.objects.filter(pk=deployment.pk).update(rollout_command=command)
    deployment.rollout_command = command
    runs = {r.instance_id: r for r in command.runs.all()}
    existing = {t.instance_id: t for t in deployment.targets.filter(instance_id__in=runs)}
    new_targets = []
    for instance_id, run in runs.items():
        target = existing.get(instance_id)
        if target:  # a candidate pre-flight excluded from the canary: it is part of the rest of the scope
            target.role, target.run = TargetRole.ROLLOUT, run
            target.save(update_fields=["role", "run"])
        else:
            new_targets.append(
                CanaryTarget(deployment=deployment, instance_id=instance_id, role=TargetRole.ROLLOUT, run=run)
            )
    CanaryTarget.objects.bulk_create(new_targets)


def _rollback(deployment: CanaryDeployment, *, actor, now, forced: bool, reason: str, details: dict) -> None:
    """Canary/evaluation → rollback: revert exactly the deployed change on each canary instance."""
    _transition(
        deployment,
        Phase.ROLLBACK,
        decided_at=now,
        forced=forced,
        failure_reason=reason,
        failure_details=details,
        next_poll_at=now + timedelta(seconds=recheck_seconds(deployment)),
    )
    reverted = []
    for target in _canary_targets(deployment):
        run = target.run
        if run is None:
            target.revert_note = "No command run was recorded for this instance."
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
        target.save(update_fields=["revert_command", "revert_note"])
    lines = [f"- {name}: {'; '.join(fails)}" for name, fails in sorted(details.items())]
    notify_admins(
        title=f"Canary {deployment} {'rolled back by a person' if forced else 'failed and is rolling back'}",
        body="\n".join(
            [reason, *lines, f"Reverting on: {', '.join(reverted) or 'no instance'}. The rollout will not happen."]
        ),
        url=deployment.get_absolute_url(),
        level=NotificationLevel.WARNING if forced else NotificationLevel.CRITICAL,
    )
    audit_log(
        actor=actor,
        action="canary.rollback",
        obj=deployment,
        details={"forced": forced, "reason": reason, "failed_criteria": details, "reverted_on": reverted},
    )


def _finish(deployment: CanaryDeployment, phase: str, *, actor=None, note: str = "", **fields) -> None:
    _transition(deployment, phase, **fields)
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


# --- Person-initiated actions ----------------------------------------------------------------------


@transaction.atomic
def canary_promote(*, actor, deployment: CanaryDeployment) -> CanaryDeployment:
    """Force promotion: send the change to the rest of the scope now, whatever the evaluation says."""
    require_feature(FEATURE)
    deployment.refresh_from_db()
    who = getattr(actor, "username", None) or str(actor or "system")
    _promote(deployment, actor=actor, now=timezone.now(), forced=True, summary=f"Promoted by {who}.")
    return deployment


@transaction.atomic
def canary_rollback(*, actor, deployment: CanaryDeployment, reason: str = "") -> CanaryDeployment:
    """Force rollback: revert the change on the canary instances and never roll out."""
    require_feature(FEATURE)
    deployment.refresh_from_db()
    who = getattr(actor, "username", None) or str(actor or "system")
    text = f"Rolled back by {who}" + (f": {reason.strip()}" if reason.strip() else ".")
    details = {
        t.instance.name: [t.last_reason]
        for t in _canary_targets(deployment)
        if t.last_passed is False and t.last_reason
    }
    _rollback(deployment, actor=actor, now=timezone.now(), forced=True, reason=text, details=details)
    return deployment


# --- The state machine step (run by the beat task) ---------------------------------------------------


def canary_advance(*, deployment_id: int, now=None) -> str | None:
    """Take the next step of one deployment if one is due; returns its phase afterwards.

    canary: once every canary run finished → evaluation (or rollback when the max duration passed).
    evaluation: when next_poll_at is due, one poll round, then promote / roll back / wait.
    rollout: once every rollout run finished → succeeded, or failed listing the instances.
    rollback: once every revert finished, poll health again → rolled_back (verified or not).
    Safe to call from several workers at once and after a restart: every step re-reads the database.
    """
    deployment = CanaryDeployment.objects.filter(pk=deployment_id).first()
    if deployment is None or deployment.phase not in ACTIVE_PHASES:
        return deployment.phase if deployment else None
    step = {
        Phase.CANARY: _advance_canary,
        Phase.EVALUATION: _advance_evaluation,
        Phase.ROLLOUT: _advance_rollout,
        Phase.ROLLBACK: _advance_rollback,
    }[deployment.phase]
    try:
        step(deployment, now)
    except ConflictError as exc:
        # Someone else (another worker, a person) moved it first: nothing to do.
        logger.info("canary %s: %s", deployment_id, exc.message)
    return CanaryDeployment.objects.filter(pk=deployment_id).values_list("phase", flat=True).first()


def _now(now):
    return now or timezone.now()


def _reschedule(deployment, phase, when) -> None:
    CanaryDeployment.objects.filter(pk=deployment.pk, phase=phase).update(next_poll_at=when)


def _advance_canary(deployment, now) -> None:
    now = _now(now)
    targets = _canary_targets(deployment)
    pending = [t for t in targets if t.run is None or t.run.status not in FINISHED]
    with transaction.atomic():
        if not pending:
            _transition(deployment, Phase.EVALUATION, evaluation_started_at=now, next_poll_at=now)
            audit_log(actor=None, action="canary.evaluate", obj=deployment, details={"canary": len(targets)})
        elif deployment.deadline_at and now >= deployment.deadline_at:
            names = {t.instance.name: ["change: not applied within the max duration"] for t in pending}
            reason = (
                f"The change was not applied to every canary instance within the max duration "
                f"({deployment.max_duration_seconds} s); still pending on {len(pending)}."
            )
            _rollback(deployment, actor=None, now=now, forced=False, reason=reason, details=names)
        else:
            _reschedule(deployment, Phase.CANARY, now + timedelta(seconds=recheck_seconds(deployment)))


@dataclass
class _Seen:
    target: CanaryTarget
    observation: evaluation.Observation
    probe: probes.ProbeResult | None


def _observe(deployment, targets, *, include_runs: bool) -> list[_Seen]:
    """Look at every canary instance once: online status, health endpoint, new violations, the change's run."""
    criteria = deployment.criteria
    instances = {i.pk: i for i in Instance.objects.filter(pk__in=[t.instance_id for t in targets])}
    results = {}
    if Criterion.HEALTH_CHECK in criteria:
        results = probe_instances(list(instances.values()), deployment.health_path)
    current, violations_error = {}, ""
    if Criterion.NO_NEW_VIOLATIONS in criteria:
        try:
            current = _violation_keys(list(instances))
        except Exception as exc:  # unavailable now: counts as not verified, never as passed
            violations_error = getattr(exc, "message", str(exc))[:200]
    runs = {}
    if include_runs:  # fresh statuses, one query for the whole group
        runs = CommandRun.objects.only("status", "error").in_bulk([t.run_id for t in targets if t.run_id])
    seen = []
    for target in targets:
        inst = instances.get(target.instance_id)
        if inst is None:  # deleted from the fleet meanwhile (its target goes with it)
            continue
        run = runs.get(target.run_id)
        result = results.get(inst.pk)
        obs = evaluation.Observation(
            run_failed=(run.error or "failed")[:150] if run is not None and run.status == RunStatus.FAILED else "",
            online=inst.status == InstanceStatus.ONLINE,
            probe_healthy=result.healthy if result else None,
            probe_reason=result.reason if result else "",
            new_violations=evaluation.new_violation_keys(
                deployment.violations_baseline.get(str(inst.pk), ()), map(str, current.get(inst.pk, ()))
            ),
            violations_error=violations_error,
        )
        seen.append(_Seen(target, obs, result))
    return seen


def _record_round(deployment, seen, *, purpose, number, at, duration_ms, consecutive_required) -> tuple[int, int, dict]:
    """Store one HealthPoll per instance and the round summary; returns (passing, total, failures by name)."""
    polls, failures, passing = [], {}, 0
    for item in seen:
        target = item.target
        verdict = evaluation.judge(
            deployment.criteria,
            item.observation,
            previous_consecutive=target.consecutive_healthy if purpose == PollPurpose.EVALUATION else 0,
            required_consecutive=consecutive_required,
        )
        passing += verdict.passes
        if verdict.failures:
            failures[target.instance.name] = list(verdict.failures)
        probe = item.probe
        polls.append(
            HealthPoll(
                deployment=deployment,
                instance_id=target.instance_id,
                purpose=purpose,
                round=number,
                polled_at=at,
                url=(probe.url if probe else "")[:400],
                status_code=probe.status_code if probe else None,
                latency_ms=probe.latency_ms if probe else None,
                healthy=verdict.passed_round,
                reason="; ".join(verdict.failures)[:500],
                failed_criteria=[f.split(":", 1)[0] for f in verdict.failures],
            )
        )
        if purpose == PollPurpose.EVALUATION:
            target.consecutive_healthy = verdict.consecutive
            target.last_passed = verdict.passed_round
            target.last_reason = "; ".join(verdict.failures)[:300]
            target.save(update_fields=["consecutive_healthy", "last_passed", "last_reason"])
    HealthPoll.objects.bulk_create(polls)
    total = len(seen)
    EvaluationRound.objects.create(
        deployment=deployment,
        purpose=purpose,
        number=number,
        at=at,
        duration_ms=duration_ms,
        total=total,
        passing=passing,
        healthy_share=evaluation.healthy_share(passing, total),
        threshold_met=evaluation.threshold_met(passing, total, deployment.success_threshold),
    )
    return passing, total, failures


def _advance_evaluation(deployment, now) -> None:
    now = _now(now)
    if deployment.next_poll_at and deployment.next_poll_at > now:
        return
    # Claim this round: of two workers only one moves poll_round on; the HTTP round runs outside any transaction.
    number = deployment.poll_round + 1
    next_at = now + timedelta(seconds=deployment.check_interval_seconds)
    if deployment.deadline_at:
        next_at = min(next_at, max(deployment.deadline_at, now + timedelta(seconds=1)))
    claimed = CanaryDeployment.objects.filter(
        pk=deployment.pk, phase=Phase.EVALUATION, poll_round=deployment.poll_round
    ).update(poll_round=number, next_poll_at=next_at)
    if not claimed:
        return
    targets = _canary_targets(deployment)
    started = time.monotonic()
    seen = _observe(deployment, targets, include_runs=True)
    duration_ms = int((time.monotonic() - started) * 1000)
    decided_at = now if now is not None else timezone.now()
    with transaction.atomic():
        current = CanaryDeployment.objects.select_for_update().get(pk=deployment.pk)
        if current.phase != Phase.EVALUATION:
            return  # promoted or rolled back by a person while this round was polling
        passing, total, failures = _record_round(
            current,
            seen,
            purpose=PollPurpose.EVALUATION,
            number=number,
            at=decided_at,
            duration_ms=duration_ms,
            consecutive_required=current.consecutive_healthy,
        )
        decision = evaluation.decide(
            passing=passing,
            total=total,
            threshold=current.success_threshold,
            now=decided_at,
            deadline=current.deadline_at,
        )
        summary = (
            f"{passing} of {total} canary instances passed ({evaluation.healthy_share(passing, total):g} %) "
            f"against a threshold of {current.success_threshold} %"
        )
        if decision == Phase.ROLLOUT:
            _promote(
                current,
                actor=None,
                now=decided_at,
                forced=False,
                summary=f"Threshold met in round {number}: {summary}.",
            )
        elif decision == Phase.ROLLBACK:
            reason = (
                f"The success threshold was not met within the max duration ({current.max_duration_seconds} s): "
                f"in round {number}, {summary}."
            )
            _rollback(current, actor=None, now=decided_at, forced=False, reason=reason, details=failures)


def _advance_rollout(deployment, now) -> None:
    now = _now(now)
    targets = list(deployment.targets.filter(role=TargetRole.ROLLOUT).select_related("instance", "run"))
    if any(t.run is None or t.run.status not in FINISHED for t in targets):
        _reschedule(deployment, Phase.ROLLOUT, now + timedelta(seconds=recheck_seconds(deployment)))
        return
    failed = [t for t in targets if t.run.status == RunStatus.FAILED]
    with transaction.atomic():
        if failed:
            listed = "; ".join(f"{t.instance.name}: {(t.run.error or 'failed')[:120]}" for t in failed[:20])
            reason = f"The rollout failed on {len(failed)} of {len(targets)} instances: {listed}."
            _finish(
                deployment,
                Phase.FAILED,
                note=reason,
                failure_reason=reason,
                failure_details={t.instance.name: [f"rollout: {t.run.error or 'failed'}"] for t in failed},
            )
        else:
            _finish(
                deployment,
                Phase.SUCCEEDED,
                note=f"The change is on all {len(targets)} rollout instances and the canary group.",
            )


def _advance_rollback(deployment, now) -> None:
    now = _now(now)
    targets = _canary_targets(deployment)
    revert_runs = list(
        CommandRun.objects.filter(command__in=[t.revert_command_id for t in targets if t.revert_command_id])
    )
    if any(r.status not in FINISHED for r in revert_runs):
        _reschedule(deployment, Phase.ROLLBACK, now + timedelta(seconds=recheck_seconds(deployment)))
        return
    failed = [r for r in revert_runs if r.status == RunStatus.FAILED]
    if failed:
        names = {t.revert_command_id: t.instance.name for t in targets}
        listed = "; ".join(f"{names.get(r.command_id, r.instance_id)}: {(r.error or 'failed')[:120]}" for r in failed)
        with transaction.atomic():
            _finish(
                deployment,
                Phase.FAILED,
                note=f"The rollback could not revert the change on: {listed}.",
                rollback_verified=False,
                rollback_note=f"Rollback failed on: {listed}.",
            )
        return
    if deployment.next_poll_at and deployment.next_poll_at > now:
        return
    # Verification: the same criteria, one round at a time, until every canary instance passes again.
    number = deployment.verification_round + 1
    claimed = CanaryDeployment.objects.filter(
        pk=deployment.pk, phase=Phase.ROLLBACK, verification_round=deployment.verification_round
    ).update(verification_round=number, next_poll_at=now + timedelta(seconds=deployment.check_interval_seconds))
    if not claimed:
        return
    started = time.monotonic()
    seen = _observe(deployment, targets, include_runs=False)
    duration_ms = int((time.monotonic() - started) * 1000)
    with transaction.atomic():
        current = CanaryDeployment.objects.select_for_update().get(pk=deployment.pk)
        if current.phase != Phase.ROLLBACK:
            return
        passing, total, failures = _record_round(
            current,
            seen,
            purpose=PollPurpose.VERIFICATION,
            number=number,
            at=now,
            duration_ms=duration_ms,
            consecutive_required=1,
        )
        if passing == total:
            note = f"Rollback verified: all {total} canary instances meet the criteria again (check {number})."
            _finish(current, Phase.ROLLED_BACK, note=note, rollback_verified=True, rollback_note=note)
        elif number >= verify_rounds():
            listed = "; ".join(f"{name}: {', '.join(f)}" for name, f in sorted(failures.items()))
            note = f"Rollback not verified: after {number} checks {total - passing} of {total} still fail ({listed})."
            _finish(current, Phase.ROLLED_BACK, note=note, rollback_verified=False, rollback_note=note[:2000])


def canary_run_finished(*, run_id: int) -> int:
    """A command run finished: make the deployments waiting on it due now. Returns how many."""
    waiting = CanaryDeployment.objects.filter(phase__in=(Phase.CANARY, Phase.ROLLOUT, Phase.ROLLBACK)).filter(
        Q(targets__run_id=run_id) | Q(targets__revert_command__runs__id=run_id)
    )
    ids = list(waiting.values_list("pk", flat=True).distinct())
    if not ids:
        return 0
    return CanaryDeployment.objects.filter(pk__in=ids, phase__in=(Phase.CANARY, Phase.ROLLOUT, Phase.ROLLBACK)).update(
        next_poll_at=timezone.now()
    )


def due_deployment_ids(*, now=None) -> list[int]:
    now = _now(now)
    return list(
        CanaryDeployment.objects.filter(phase__in=ACTIVE_PHASES, next_poll_at__lte=now)
        .order_by("next_poll_at")
        .values_list("pk", flat=True)
    )
