"""Poll rounds: every instance the change reached is checked once per interval, and the round decides.

A round is claimed before any HTTP request by one conditional UPDATE (`poll_round` moves on only when
the previous round was recorded, or its claim went stale with a killed worker), so a round never runs
twice and never overlaps the previous one. The probes run outside any transaction; the round is then
recorded and judged under the deployment's row lock, against the deployment as it is at that moment
(a person may have paused or approved meanwhile). Each poll row carries the instance's consecutive
count, so judging the next round needs only the previous round's rows.
"""

import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.choices import NotificationLevel
from common.services import audit_log, notify_role
from fleet.choices import InstanceStatus, RunStatus
from fleet.models import CommandRun, Instance

from .. import evaluation, probes, timing
from ..choices import Criterion, Phase, PollPurpose, RoundMode
from ..models import CanaryDeployment, CanaryTarget, EvaluationRound, HealthPoll
from . import apply, transitions
from .base import ACT_ROLE, FINISHED, configured_probe_timeout, verify_rounds
from .preflight import probe_instances, violation_keys

STALE_AFTER = 10  # seconds past a round's longest duration after which its claim is considered lost


@dataclass(frozen=True)
class Watched:
    """One instance a round polls, read as plain values (a round over 10,000 instances builds no models)."""

    instance_id: int
    name: str
    step: int
    judged: bool
    run_id: int | None
    run_status: str
    run_error: str


@dataclass
class Seen:
    target: Watched
    observation: evaluation.Observation
    probe: probes.ProbeResult | None


def watched(deployment, *, finished_only: bool = True) -> list[Watched]:
    """The instances a round polls: every one the change reached whose run has finished (or, to verify a
    rollback, every one it was sent to)."""
    rows = CanaryTarget.objects.filter(deployment=deployment, step__isnull=False, excluded=False, run__isnull=False)
    if finished_only:
        rows = rows.filter(run__status__in=FINISHED)
    fields = ("instance_id", "instance__name", "step", "judged", "run_id", "run__status", "run__error")
    return [Watched(*row) for row in rows.order_by("instance__name").values_list(*fields)]


def observe(deployment, targets, *, include_runs: bool = True) -> list[Seen]:
    """Look at every instance once: online status, health endpoint, new violations, the change's run."""
    criteria = deployment.criteria
    instances = {
        i.pk: i
        for i in Instance.objects.filter(pk__in=[t.instance_id for t in targets]).only("id", "address", "status")
    }
    results = {}
    if Criterion.HEALTH_CHECK in criteria:
        results = probe_instances(list(instances.values()), deployment.health_path, deployment.probe_timeout)
    current, violations_error = {}, ""
    if Criterion.NO_NEW_VIOLATIONS in criteria:
        try:
            current = violation_keys(list(instances))
        except Exception as exc:  # noqa: BLE001 - unavailable now: counts as not verified, never as passed
            violations_error = getattr(exc, "message", str(exc))[:200]
    baseline = deployment.violations_baseline
    seen = []
    for target in targets:
        inst = instances.get(target.instance_id)
        if inst is None:  # deleted from the fleet meanwhile (its target goes with it)
            continue
        result = results.get(inst.pk)
        failed = include_runs and target.run_status == RunStatus.FAILED
        obs = evaluation.Observation(
            run_failed=(target.run_error or "failed")[:150] if failed else "",
            online=inst.status == InstanceStatus.ONLINE,
            probe_healthy=result.healthy if result else None,
            probe_reason=result.reason if result else "",
            new_violations=evaluation.new_violation_keys(baseline.get(str(inst.pk), ()), current.get(inst.pk, ())),
            violations_error=violations_error,
        )
        seen.append(Seen(target, obs, result))
    return seen


def _claim(deployment, *, now, polled: int) -> int | None:
    """Claim the next round; None when it is not due, another worker has it, or one is still running."""
    due = deployment.next_round_at
    if due is None or due > now:
        return None
    anchor = deployment.evaluation_started_at or due
    following = timing.next_due(anchor, deployment.check_interval_seconds, max(now, due))
    longest = timing.round_seconds(deployment.check_interval_seconds, configured_probe_timeout(), polled)
    stale = now - timedelta(seconds=longest + STALE_AFTER)
    recorded = deployment.rounds_recorded
    won = (
        CanaryDeployment.objects.filter(pk=deployment.pk, rounds_recorded=recorded, next_round_at=due)
        .filter(Q(poll_round=recorded) | Q(round_claimed_at__lt=stale))
        .update(poll_round=recorded + 1, next_round_at=following, round_claimed_at=now)
    )
    return recorded + 1 if won else None


def run_round(deployment_id: int, *, now) -> bool:
    """Run the deployment's next round if it is due; True when one ran."""
    deployment = CanaryDeployment.objects.get(pk=deployment_id)
    if deployment.phase not in (Phase.CANARY, Phase.EVALUATION, Phase.ROLLOUT):
        return False
    targets = watched(deployment)
    if not targets:
        return False
    due = deployment.next_round_at
    number = _claim(deployment, now=now, polled=len(targets))
    if number is None:
        return False
    started_at = now
    began = time.monotonic()
    seen = observe(deployment, targets)
    duration_ms = int((time.monotonic() - began) * 1000)
    with transaction.atomic():
        current = CanaryDeployment.objects.select_for_update().get(pk=deployment_id)
        if current.poll_round != number or current.rounds_recorded != number - 1:
            return False  # our claim went stale and another worker re-ran this round
        _record(current, seen, number=number, due=due, started_at=started_at, duration_ms=duration_ms)
    return True


def _record(deployment, seen, *, number, due, started_at, duration_ms) -> None:
    mode = evaluation.round_mode(
        phase=deployment.phase,
        forced=deployment.forced,
        paused=deployment.paused,
        awaiting_approval=deployment.awaiting_approval,
        applied=deployment.step_applied_at is not None,
    )
    if deployment.phase not in (Phase.CANARY, Phase.EVALUATION, Phase.ROLLOUT):
        mode = RoundMode.OBSERVE  # rolled back by a person while this round polled: keep what was seen
    required = deployment.consecutive_healthy
    previous = dict(
        HealthPoll.objects.filter(deployment=deployment, purpose=PollPurpose.EVALUATION, round=number - 1).values_list(
            "instance_id", "consecutive"
        )
    )
    polls, members, details = [], [], {}
    step = deployment.current_step
    for item in seen:
        target = item.target
        verdict = evaluation.judge(
            deployment.criteria,
            item.observation,
            previous_consecutive=previous.get(target.instance_id, 0),
            required_consecutive=required,
        )
        established = target.step < step or (target.step == step and deployment.awaiting_approval)
        members.append(
            evaluation.Member(
                passed=verdict.passed_round,
                consecutive=verdict.consecutive,
                run_failed=bool(item.observation.run_failed),
                established=established,
                judged=target.judged,
            )
        )
        missing = evaluation.shortfall(verdict, required)
        if target.judged and missing and (mode != RoundMode.WATCH or established or item.observation.run_failed):
            details[target.name] = missing
        polls.append(_poll(deployment, target, item, verdict, number=number, step=target.step, at=started_at))
    HealthPoll.objects.bulk_create(polls, batch_size=1000)
    rounds_left = None
    if mode == RoundMode.EVALUATE:
        rounds_left = timing.rounds_left(
            deployment.evaluation_started_at, deployment.check_interval_seconds, started_at, deployment.deadline_at
        )
    outcome = evaluation.decide_round(
        members, mode=mode, threshold=deployment.success_threshold, required=required, rounds_left=rounds_left
    )
    words = _decide(deployment, outcome, number=number, rounds_left=rounds_left, details=details, now=started_at)
    EvaluationRound.objects.create(
        deployment=deployment,
        purpose=PollPurpose.EVALUATION,
        number=number,
        step=step,
        mode=mode,
        due_at=due,
        started_at=started_at,
        at=timezone.now(),
        duration_ms=duration_ms,
        total=outcome.total,
        healthy=outcome.healthy,
        passing=outcome.passing,
        healthy_share=evaluation.healthy_share(outcome.healthy, outcome.total),
        threshold_met=evaluation.threshold_met(outcome.passing, outcome.total, deployment.success_threshold),
        decision=words[:300],
    )
    CanaryDeployment.objects.filter(pk=deployment.pk).update(rounds_recorded=number)


def _poll(deployment, target, item, verdict, *, number, step, at, purpose=PollPurpose.EVALUATION) -> HealthPoll:
    probe = item.probe
    return HealthPoll(
        deployment=deployment,
        instance_id=target.instance_id,
        purpose=purpose,
        round=number,
        step=step,
        polled_at=at,
        url=(probe.url if probe else "")[:400],
        status_code=probe.status_code if probe else None,
        error=(probe.reason if probe and not probe.status_code else "")[:300],
        latency_ms=probe.latency_ms if probe else None,
        healthy=verdict.passed_round,
        consecutive=verdict.consecutive,
        reason="; ".join(verdict.failures)[:500],
        failed_criteria=[f.split(":", 1)[0] for f in verdict.failures],
    )


def _decide(deployment, outcome, *, number, rounds_left, details, now) -> str:
    """Act on one round's outcome inside its transaction; returns the words stored on the round."""
    threshold = deployment.success_threshold
    stage = apply.stage_label(deployment, deployment.current_step)
    who = "canary instances" if deployment.current_step == 1 else "instances"
    summary = (
        f"{outcome.passing} of {outcome.total} {who} passed "
        f"({evaluation.healthy_share(outcome.passing, outcome.total):g} %) against a threshold of {threshold} %"
    )
    limit = f"the max duration ({deployment.max_duration_seconds} s)"
    if outcome.decision == "rollback":
        if outcome.why == "watch":
            reason = (
                f"Health failed past the threshold during the {stage}: in round {number}, "
                f"{outcome.total - len(details)} of {outcome.total} instances are healthy against a threshold of {threshold} %."
            )
        elif outcome.why == "deadline":
            reason = f"The success threshold was not met within {limit}: in round {number}, {summary}."
        else:
            reason = (
                f"The success threshold can no longer be met within {limit}: in round {number}, {summary}; "
                f"at most {outcome.possible} could still pass in the {rounds_left} round(s) left."
            )
        if deployment.current_step > 1:
            reason = f"Step {deployment.current_step} ({stage}): {reason}"
        transitions.rollback(deployment, actor=None, now=now, forced=False, reason=reason, details=details)
        return f"rolled back: {reason}"
    if outcome.decision != "promote":
        return ""
    if deployment.phase == Phase.ROLLOUT:
        targets = apply.step_targets(deployment)
        apply.finish_rollout(deployment, targets, [t for t in targets if t.run and t.run.status == RunStatus.FAILED])
        return "rollout verified"
    step = deployment.stages[deployment.current_step - 1]
    text = f"Threshold met in round {number}: {summary}."
    if step.approval and deployment.current_step < len(deployment.stages):
        CanaryDeployment.objects.filter(pk=deployment.pk, awaiting_approval=False).update(awaiting_approval=True)
        deployment.awaiting_approval = True
        audit_log(
            actor=None,
            action="canary.awaiting_approval",
            obj=deployment,
            details={"step": deployment.current_step, "summary": text},
        )
        notify_role(  # everyone who may approve, not only the admins
            role=ACT_ROLE,
            title=f"Canary {deployment}: step {deployment.current_step} passed, waiting for approval",
            body=f"{text} Approve the next step on the deployment's page, or roll back.",
            url=deployment.get_absolute_url(),
            level=NotificationLevel.INFO,
        )
        return "passed: waiting for approval"
    transitions.next_step(deployment, actor=None, now=now, summary=text)
    return f"passed: {text}"


# --- After a rollback ---------------------------------------------------------------------------------


def verify_rollback(deployment, *, now):
    """Once every revert finished, check the same criteria again, one round per interval.

    Returns the time of the next look, or None when the deployment ended.
    """
    targets = transitions.reached_targets(deployment)
    revert_runs = list(
        CommandRun.objects.filter(command__in=[t.revert_command_id for t in targets if t.revert_command_id])
    )
    if any(r.status not in FINISHED for r in revert_runs):
        return "runs"
    failed = [r for r in revert_runs if r.status == RunStatus.FAILED]
    if failed:
        names = {t.revert_command_id: t.instance.name for t in targets}
        listed = "; ".join(
            f"{names.get(r.command_id, r.instance_id)}: {(r.error or 'failed')[:120]}" for r in failed[:50]
        )
        with transaction.atomic():
            transitions.finish(
                deployment,
                Phase.FAILED,
                note=f"The rollback could not revert the change on: {listed}.",
                rollback_verified=False,
                rollback_note=f"Rollback failed on: {listed}.",
            )
        return None
    if deployment.next_round_at and deployment.next_round_at > now:
        return deployment.next_round_at
    number = deployment.verification_round + 1
    following = now + timedelta(seconds=deployment.check_interval_seconds)
    claimed = CanaryDeployment.objects.filter(
        pk=deployment.pk, phase=Phase.ROLLBACK, verification_round=deployment.verification_round
    ).update(verification_round=number, next_round_at=following)
    if not claimed:
        return following
    judged = [t for t in watched(deployment, finished_only=False) if t.judged]  # a wave never sent changed nothing
    began = time.monotonic()
    seen = observe(deployment, judged, include_runs=False)
    duration_ms = int((time.monotonic() - began) * 1000)
    with transaction.atomic():
        current = CanaryDeployment.objects.select_for_update().get(pk=deployment.pk)
        if current.phase != Phase.ROLLBACK:
            return None
        _record_verification(current, seen, number=number, now=now, duration_ms=duration_ms)
    return following


def _record_verification(deployment, seen, *, number, now, duration_ms) -> None:
    polls, members, failures = [], [], {}
    for item in seen:
        verdict = evaluation.judge(deployment.criteria, item.observation, previous_consecutive=0)
        members.append(evaluation.Member(passed=verdict.passed_round, consecutive=verdict.consecutive))
        if verdict.failures:
            failures[item.target.name] = list(verdict.failures)
        polls.append(
            _poll(
                deployment,
                item.target,
                item,
                verdict,
                number=number,
                step=item.target.step,
                at=now,
                purpose=PollPurpose.VERIFICATION,
            )
        )
    HealthPoll.objects.bulk_create(polls, batch_size=1000)
    left = max(0, verify_rounds() - number)
    outcome = evaluation.decide_round(members, mode=RoundMode.VERIFY, threshold=100, rounds_left=left)
    EvaluationRound.objects.create(
        deployment=deployment,
        purpose=PollPurpose.VERIFICATION,
        number=number,
        mode=RoundMode.VERIFY,
        due_at=now,
        started_at=now,
        at=timezone.now(),
        duration_ms=duration_ms,
        total=outcome.total,
        healthy=outcome.healthy,
        passing=outcome.healthy,
        healthy_share=evaluation.healthy_share(outcome.healthy, outcome.total),
        threshold_met=outcome.decision == "verified",
        decision=outcome.decision,
    )
    total = outcome.total
    if outcome.decision == "verified":
        note = f"Rollback verified: all {total} instances the change reached meet the criteria again (check {number})."
        transitions.finish(deployment, Phase.ROLLED_BACK, note=note, rollback_verified=True, rollback_note=note)
    elif outcome.decision == "unverified":
        listed = "; ".join(f"{name}: {', '.join(f)}" for name, f in sorted(failures.items())[:50])
        note = (
            f"Rollback not verified: after {number} checks {total - outcome.healthy} of {total} still fail ({listed})."
        )
        transitions.finish(deployment, Phase.ROLLED_BACK, note=note, rollback_verified=False, rollback_note=note[:2000])
