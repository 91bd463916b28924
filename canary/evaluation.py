"""Pure decision logic of a canary deployment: transitions, canary sizing, criteria and the threshold.

No ORM and no I/O: every function takes plain data, so each rule is unit-tested on its own.
"""

import math
from dataclasses import dataclass, field

from .choices import Criterion, Phase


class TransitionError(ValueError):
    """A phase change the state machine does not allow; the message says why."""


# The only phase changes there are. Everything else is refused with a reason.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    Phase.CANARY: (Phase.EVALUATION, Phase.ROLLOUT, Phase.ROLLBACK),
    Phase.EVALUATION: (Phase.ROLLOUT, Phase.ROLLBACK),
    Phase.ROLLOUT: (Phase.SUCCEEDED, Phase.FAILED),
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
    Phase.CANARY: "the change is still being applied to the canary instances",
    Phase.EVALUATION: "the canary instances are still being evaluated",
}
_VERBS = {
    Phase.ROLLOUT: "promote",
    Phase.ROLLBACK: "roll back",
    Phase.EVALUATION: "start evaluating",
    Phase.SUCCEEDED: "mark as succeeded",
    Phase.ROLLED_BACK: "mark as rolled back",
    Phase.FAILED: "mark as failed",
    Phase.CANARY: "restart",
}


def transition_allowed(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, ())


def check_transition(old: str, new: str) -> None:
    """Raise TransitionError with a reason a person understands unless old → new is allowed."""
    if not transition_allowed(old, new):
        raise TransitionError(f"Cannot {_VERBS.get(new, new)} this deployment: {_REFUSALS.get(old, old)}.")


def canary_size(percentage: int, scope_size: int) -> int:
    """How many instances a percentage of the scope means: rounded up, at least one of a non-empty scope."""
    if scope_size <= 0:
        return 0
    return max(1, min(scope_size, math.ceil(scope_size * percentage / 100)))


def threshold_met(passing: int, total: int, threshold: int) -> bool:
    """At least `threshold` % of the canary instances passed. Integer arithmetic: 2 of 3 is 66.7 %.

    2 of 3 meets 66 % (200 >= 198) and fails 100 % (200 < 300). No canary instances never meets it.
    """
    if total <= 0:
        return False
    return passing * 100 >= threshold * total


def healthy_share(passing: int, total: int) -> float:
    return round(100.0 * passing / total, 1) if total else 0.0


@dataclass(frozen=True)
class Observation:
    """What was seen of one canary instance in one round."""

    run_failed: str = ""  # the change's run failed on it: the error
    online: bool = True
    probe_healthy: bool | None = None  # None when the health check is not a criterion
    probe_reason: str = ""
    new_violations: frozenset = field(default_factory=frozenset)
    violations_error: str = ""  # the provider could not answer


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


def new_violation_keys(baseline, current) -> frozenset:
    """Keys present now that were not present at the start of the canary phase."""
    return frozenset(set(current or ()) - set(baseline or ()))


def decide(*, passing: int, total: int, threshold: int, now, deadline) -> str | None:
    """After a round: promote when the threshold is met, roll back when time is up, else keep evaluating."""
    if threshold_met(passing, total, threshold):
        return Phase.ROLLOUT
    if deadline is not None and now >= deadline:
        return Phase.ROLLBACK
    return None


def choose_canary(candidates, size: int, problems: dict) -> tuple[list, list]:
    """Pick `size` canary instances from `candidates` (in order), passing over those with a problem.

    `problems` maps a candidate to why it cannot be a canary (offline, unhealthy). Returns
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
