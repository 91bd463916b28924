"""Pure decision logic of a canary deployment: transitions, steps, criteria, the threshold, each round's decision.

No ORM and no I/O: every function takes plain data, so each rule is unit-tested on its own.
"""

import math
from dataclasses import dataclass, field

from fleet.choices import CommandType

from .choices import Criterion, Phase, RoundMode


class TransitionError(ValueError):
    """A phase change the state machine does not allow; the message says why."""


# The only phase changes there are. Everything else is refused with a reason. `evaluation → canary` is
# the move to the next step; `rollout → rollback` is the watched rollout failing (or a person).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    Phase.CANARY: (Phase.EVALUATION, Phase.ROLLOUT, Phase.ROLLBACK),
    Phase.EVALUATION: (Phase.CANARY, Phase.ROLLOUT, Phase.ROLLBACK),
    Phase.ROLLOUT: (Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLBACK),
    Phase.ROLLBACK: (Phase.ROLLED_BACK, Phase.FAILED),
    Phase.SUCCEEDED: (),
    Phase.ROLLED_BACK: (),
    Phase.FAILED: (),
}

_REFUSALS = {
    Phase.ROLLOUT: "it is already rolling out to the rest of the fleet",
    Phase.ROLLBACK: "it is already rolling back",
    Phase.SUCCEEDED: "it already succeeded",
    Phase.ROLLED_BACK: "it was rolled back",
    Phase.FAILED: "it failed",
    Phase.CANARY: "the change is still being applied to the instances of this step",
    Phase.EVALUATION: "the instances of this step are still being evaluated",
}
_VERBS = {
    Phase.ROLLOUT: "promote",
    Phase.ROLLBACK: "roll back",
    Phase.EVALUATION: "start evaluating",
    Phase.SUCCEEDED: "mark as succeeded",
    Phase.ROLLED_BACK: "mark as rolled back",
    Phase.FAILED: "mark as failed",
    Phase.CANARY: "start the next step of",
}


def transition_allowed(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, ())


def check_transition(old: str, new: str) -> None:
    """Raise TransitionError with a reason a person understands unless old → new is allowed."""
    if not transition_allowed(old, new):
        raise TransitionError(f"Cannot {_VERBS.get(new, new)} this deployment: {_REFUSALS.get(old, old)}.")


# Actions a person can take, with the phase change each makes (None: a flag, not a phase change).
ACTIONS = ("promote", "rollback", "approve", "pause", "resume")


def action_refusal(action: str, *, phase: str, paused: bool = False, awaiting_approval: bool = False) -> str:
    """Why a person may not take `action` now ("" when they may). The pages and the services both ask this."""
    if action == "promote":
        if phase == Phase.ROLLOUT:
            return f"Cannot promote this deployment: {_REFUSALS[phase]}."
        return _phase_refusal(phase, Phase.ROLLOUT)
    if action == "rollback":
        return _phase_refusal(phase, Phase.ROLLBACK)
    if phase not in (Phase.CANARY, Phase.EVALUATION, Phase.ROLLOUT):
        return f"Cannot {action} this deployment: {_REFUSALS.get(phase, phase)}."
    if action == "pause":
        return "Cannot pause this deployment: it is already paused." if paused else ""
    if action == "resume":
        return "" if paused else "Cannot resume this deployment: it is not paused."
    if action == "approve":
        if not awaiting_approval:
            return "Cannot approve the next step: this deployment is not waiting for an approval."
        return "Cannot approve the next step: the deployment is paused; resume it first." if paused else ""
    raise ValueError(f"unknown action {action}")


# Moving a deployment on needs the license feature; watching it, pausing it and rolling it back do not,
# so a downgrade never leaves a running deployment nobody may stop.
LICENSED_ACTIONS = ("promote", "approve", "resume")


def allowed_actions(*, phase: str, paused: bool, awaiting_approval: bool, licensed: bool = True) -> dict[str, bool]:
    """Which actions a person with the role may take now: the state allows it, and the license if it needs one."""
    return {
        action: not action_refusal(action, phase=phase, paused=paused, awaiting_approval=awaiting_approval)
        and (licensed or action not in LICENSED_ACTIONS)
        for action in ACTIONS
    }


def _phase_refusal(phase: str, new: str) -> str:
    try:
        check_transition(phase, new)
    except TransitionError as exc:
        return str(exc)
    return ""


# --- Sizes, steps and the threshold -------------------------------------------------------------


def canary_size(percentage: int, scope_size: int) -> int:
    """How many instances a percentage of the scope means: rounded up, at least one of a non-empty scope."""
    if scope_size <= 0:
        return 0
    return max(1, min(scope_size, math.ceil(scope_size * percentage / 100)))


@dataclass(frozen=True)
class Step:
    """One step of a progressive deployment: a cumulative share of the scope, or named instances to add."""

    percentage: int | None = None
    instances: tuple[int, ...] = ()
    approval: bool = False  # wait for a person's approval once this step passed

    def as_dict(self) -> dict:
        head = {"percentage": self.percentage} if self.percentage is not None else {"instances": list(self.instances)}
        return {**head, "approval": self.approval}

    @classmethod
    def from_dict(cls, data: dict) -> "Step":
        return cls(
            percentage=data.get("percentage"),
            instances=tuple(data.get("instances") or ()),
            approval=bool(data.get("approval")),
        )


FINAL = Step(percentage=100)


def stages(steps) -> list[Step]:
    """The steps as they run: those given, then the rest of the scope unless the last already is 100 %."""
    steps = list(steps)
    if not steps or steps[-1].percentage != 100:
        steps.append(FINAL)
    return steps


def step_size(step: Step, *, eligible: int, reached: int) -> int:
    """How many more instances a percentage step reaches, given how many the change already reached."""
    if step.percentage is None:
        return len(step.instances)
    return max(0, canary_size(step.percentage, eligible) - reached)


def forecast(steps, eligible: int) -> list[int]:
    """How many instances each stage adds if every candidate can be used (what the preview shows)."""
    reached, sizes = 0, []
    for step in stages(steps):
        size = min(step_size(step, eligible=eligible, reached=reached), eligible - reached)
        sizes.append(size)
        reached += size
    return sizes


def threshold_met(passing: int, total: int, threshold: int) -> bool:
    """At least `threshold` % of the judged instances passed. Integer arithmetic: 2 of 3 is 66.7 %.

    2 of 3 meets 66 % (200 >= 198) and fails 100 % (200 < 300). No instances never meets it.
    """
    if total <= 0:
        return False
    return passing * 100 >= threshold * total


def healthy_share(passing: int, total: int) -> float:
    return round(100.0 * passing / total, 1) if total else 0.0


def change_resources(kind: str, params: dict) -> set[str]:
    """What a change touches on an instance: two deployments touching the same thing on one instance conflict."""
    if kind == CommandType.UPDATE_OS:
        return {"the OS version"}
    if kind == CommandType.SET_CONFIG:
        keys = list((params or {}).get("values") or {}) + list((params or {}).get("unset") or [])
        return {f"setting {key}" for key in keys}
    return {f"app {(params or {}).get('app', '')}"}


def needs_installed_app(kind: str) -> bool:
    """Commands that fail on an instance without the app (update, uninstall, start, stop, restart)."""
    return kind in (
        CommandType.UPDATE_APP,
        CommandType.UNINSTALL_APP,
        CommandType.START_APP,
        CommandType.STOP_APP,
        CommandType.RESTART_APP,
    )


# --- One instance in one round -------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What was seen of one instance in one round."""

    run_failed: str = ""  # the change's run failed on it: the error
    online: bool = True
    probe_healthy: bool | None = None  # None when the health check is not a criterion
    probe_reason: str = ""
    new_violations: frozenset = field(default_factory=frozenset)
    violations_error: str = ""  # the open violations could not be read


@dataclass(frozen=True)
class Verdict:
    passed_round: bool  # met every chosen criterion in this round
    failures: tuple[str, ...]  # "health_check: HTTP 500", ... for the failure reason
    consecutive: int  # consecutive passing rounds including this one
    passes: bool  # counts towards the threshold (passed enough rounds in a row)


def judge(criteria, obs: Observation, *, previous_consecutive: int, required_consecutive: int = 1) -> Verdict:
    """Apply every chosen criterion to one instance's observation of this round."""
    failures = []
    if obs.run_failed:
        failures.append(f"change: the command failed ({obs.run_failed})")
    if Criterion.ONLINE in criteria and not obs.online:
        failures.append("online: the instance is offline")
    if Criterion.HEALTH_CHECK in criteria and not obs.probe_healthy:
        failures.append(f"health_check: {obs.probe_reason or 'not healthy'}")
    if Criterion.NO_NEW_VIOLATIONS in criteria:
        if obs.violations_error:
            failures.append(f"no_new_violations: could not be checked ({obs.violations_error})")
        elif obs.new_violations:
            failures.append("no_new_violations: new " + ", ".join(sorted(map(str, obs.new_violations))))
    passed = not failures
    consecutive = previous_consecutive + 1 if passed else 0
    return Verdict(passed, tuple(failures), consecutive, passed and consecutive >= max(1, required_consecutive))


def shortfall(verdict: Verdict, required: int) -> list[str]:
    """Why an instance does not count towards the threshold: its failed criteria, or too few rounds in a row."""
    if verdict.failures:
        return list(verdict.failures)
    if not verdict.passes:
        return [f"consecutive: healthy {verdict.consecutive} round(s) in a row of the {required} required"]
    return []


def new_violation_keys(baseline, current) -> frozenset:
    """Keys present now that were not present at the start of the canary phase."""
    return frozenset(set(current or ()) - set(baseline or ()))


# --- One round of the whole deployment ------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One instance the change reached whose run finished, as a round saw it."""

    passed: bool  # met every criterion in this round
    consecutive: int  # rounds passed in a row, this one included
    run_failed: bool = False
    established: bool = False  # passed the evaluation of an earlier step (or of this one, awaiting approval)
    judged: bool = True  # False: it was already unhealthy before the change, so it is watched, not counted


@dataclass(frozen=True)
class RoundOutcome:
    total: int  # judged instances
    healthy: int  # passed this round
    passing: int  # passed `required` rounds in a row: what counts towards the threshold
    possible: int  # could still be passing by the deadline
    decision: str = ""  # "promote", "rollback", "verified", "unverified" or "" (keep going)
    why: str = ""  # "met", "deadline", "cannot", "watch", "empty"


def decide_round(members, *, mode: str, threshold: int, required: int = 1, rounds_left: int | None = None):
    """What one round means for the deployment.

    evaluate: promote once `passing` meets the threshold; roll back as soon as it can no longer be met —
      an instance whose run failed never passes, and one with `c` rounds in a row and `rounds_left` more
      rounds before the deadline can reach at most c + rounds_left (so at the deadline, rounds_left = 0,
      every instance not passing yet is lost).
    watch: while a step is being applied, paused or awaiting approval, and through a rollout: roll back
      when the instances failing now exceed what the threshold allows. An instance that has not been
      evaluated yet fails only when its run failed (it may still be starting).
    verify: after a rollback's reverts, every judged instance healthy → verified; at the last check → not.
    observe: record only (a person forced the rollout).
    """
    judged = [m for m in members if m.judged]
    total = len(judged)
    healthy = sum(m.passed for m in judged)
    required = max(1, required)
    passing = sum(m.passed and m.consecutive >= required and not m.run_failed for m in judged)
    left = rounds_left if rounds_left is not None else math.inf
    possible = sum(not m.run_failed and m.consecutive + left >= required for m in judged)
    outcome = {"total": total, "healthy": healthy, "passing": passing, "possible": possible}
    if mode == RoundMode.EVALUATE:
        if total == 0:
            return RoundOutcome(**outcome, decision="promote", why="empty")
        if threshold_met(passing, total, threshold):
            return RoundOutcome(**outcome, decision="promote", why="met")
        if not threshold_met(possible, total, threshold):
            return RoundOutcome(**outcome, decision="rollback", why="deadline" if rounds_left == 0 else "cannot")
        return RoundOutcome(**outcome)
    if mode == RoundMode.WATCH:
        fine = sum((m.passed if m.established else True) and not m.run_failed for m in judged)
        if total and not threshold_met(fine, total, threshold):
            return RoundOutcome(**outcome, decision="rollback", why="watch")
        return RoundOutcome(**outcome)
    if mode == RoundMode.VERIFY:
        if healthy == total:
            return RoundOutcome(**outcome, decision="verified")
        return RoundOutcome(**outcome, decision="unverified" if rounds_left == 0 else "")
    return RoundOutcome(**outcome)


def choose_canary(candidates, size: int, problems: dict) -> tuple[list, list]:
    """Pick `size` instances from `candidates` (in order), passing over those with a problem.

    `problems` maps a candidate to why it cannot be used (offline, unhealthy). Returns
    (chosen, [(candidate, reason), ...] passed over while choosing).
    """
    chosen, excluded = [], []
    for candidate in candidates:
        if len(chosen) >= size:
            break
        reason = problems.get(candidate)
        if reason:
            excluded.append((candidate, reason))
        else:
            chosen.append(candidate)
    return chosen, excluded


def round_mode(*, phase: str, forced: bool, paused: bool, awaiting_approval: bool, applied: bool) -> str:
    """How a round in this state is judged (see decide_round)."""
    if phase == Phase.ROLLBACK:
        return RoundMode.VERIFY
    if phase == Phase.ROLLOUT and forced:
        return RoundMode.OBSERVE
    if paused or awaiting_approval or not applied:
        return RoundMode.WATCH
    return RoundMode.EVALUATE
