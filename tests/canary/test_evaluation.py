"""The pure rules: which phase changes exist, how the threshold is computed, how polls are judged."""

from datetime import datetime, timedelta

import pytest

from canary.choices import Criterion, Phase
from canary.evaluation import (
    TRANSITIONS,
    Observation,
    TransitionError,
    canary_size,
    check_transition,
    choose_canary,
    decide,
    judge,
    new_violation_keys,
    threshold_met,
)

ALLOWED = {
    (Phase.CANARY, Phase.EVALUATION),
    (Phase.CANARY, Phase.ROLLOUT),
    (Phase.CANARY, Phase.ROLLBACK),
    (Phase.EVALUATION, Phase.ROLLOUT),
    (Phase.EVALUATION, Phase.ROLLBACK),
    (Phase.ROLLOUT, Phase.SUCCEEDED),
    (Phase.ROLLOUT, Phase.FAILED),
    (Phase.ROLLBACK, Phase.ROLLED_BACK),
    (Phase.ROLLBACK, Phase.FAILED),
}
ALL_PAIRS = [(old, new) for old in Phase.values for new in Phase.values]


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED))
def test_allowed_transitions_pass(old, new):
    check_transition(old, new)


@pytest.mark.parametrize(("old", "new"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_every_other_transition_is_refused_with_a_reason(old, new):
    with pytest.raises(TransitionError, match=r"^Cannot .+: .+\.$"):
        check_transition(old, new)


def test_the_transition_table_is_exactly_the_documented_one():
    assert {(o, n) for o, targets in TRANSITIONS.items() for n in targets} == ALLOWED


def test_promoting_a_rolled_back_deployment_says_it_was_rolled_back():
    with pytest.raises(TransitionError, match="Cannot promote this deployment: it was rolled back."):
        check_transition(Phase.ROLLED_BACK, Phase.ROLLOUT)


def test_two_of_three_healthy_passes_at_66_percent_and_fails_at_100():
    assert threshold_met(2, 3, 66)
    assert not threshold_met(2, 3, 67)
    assert not threshold_met(2, 3, 100)
    assert threshold_met(3, 3, 100)


def test_the_threshold_is_never_met_without_canary_instances():
    assert not threshold_met(0, 0, 1)


@pytest.mark.parametrize(
    ("passing", "total", "threshold", "met"),
    [(1, 10, 10, True), (0, 10, 10, False), (5, 10, 50, True), (4, 10, 50, False), (1, 3, 34, False), (1, 3, 33, True)],
)
def test_threshold_edges(passing, total, threshold, met):
    assert threshold_met(passing, total, threshold) is met


def test_a_percentage_of_the_scope_rounds_up_and_is_at_least_one():
    assert canary_size(10, 3) == 1
    assert canary_size(10, 25) == 3
    assert canary_size(50, 5) == 3
    assert canary_size(100, 4) == 4
    assert canary_size(1, 0) == 0


def test_an_instance_fails_when_any_chosen_criterion_fails():
    obs = Observation(online=True, probe_healthy=False, probe_reason="HTTP 500")
    verdict = judge([Criterion.ONLINE, Criterion.HEALTH_CHECK], obs, previous_consecutive=2)
    assert not verdict.passes
    assert verdict.failures == ("health_check: HTTP 500",)
    assert verdict.consecutive == 0


def test_criteria_not_chosen_are_ignored():
    obs = Observation(online=False, probe_healthy=True)
    assert judge([Criterion.HEALTH_CHECK], obs, previous_consecutive=0).passes


def test_a_failed_change_fails_the_instance_whatever_the_criteria():
    verdict = judge([Criterion.ONLINE], Observation(run_failed="disk full"), previous_consecutive=0)
    assert not verdict.passes
    assert "disk full" in verdict.failures[0]


def test_an_instance_counts_only_after_the_required_consecutive_healthy_polls():
    healthy = Observation(probe_healthy=True)
    criteria = [Criterion.HEALTH_CHECK]
    first = judge(criteria, healthy, previous_consecutive=0, required_consecutive=3)
    second = judge(criteria, healthy, previous_consecutive=first.consecutive, required_consecutive=3)
    third = judge(criteria, healthy, previous_consecutive=second.consecutive, required_consecutive=3)
    assert (first.passes, second.passes, third.passes) == (False, False, True)
    assert third.consecutive == 3
    broken = judge(criteria, Observation(probe_healthy=False), previous_consecutive=3, required_consecutive=3)
    assert broken.consecutive == 0 and not broken.passes


def test_new_violations_are_keys_not_present_at_the_start():
    assert new_violation_keys({"a", "b"}, {"b", "c"}) == {"c"}
    obs = Observation(new_violations=frozenset({"blocked_apps:telnet"}))
    verdict = judge([Criterion.NO_NEW_VIOLATIONS], obs, previous_consecutive=0)
    assert verdict.failures == ("no_new_violations: new blocked_apps:telnet",)


def test_violations_that_cannot_be_checked_never_count_as_passed():
    obs = Observation(violations_error="provider down")
    assert not judge([Criterion.NO_NEW_VIOLATIONS], obs, previous_consecutive=0).passes


def test_decision_promotes_when_met_rolls_back_at_the_deadline_and_otherwise_waits():
    t0 = datetime(2026, 1, 1, 12, 0)
    deadline = t0 + timedelta(minutes=10)
    assert decide(passing=3, total=3, threshold=100, now=t0, deadline=deadline) == Phase.ROLLOUT
    assert decide(passing=2, total=3, threshold=100, now=t0, deadline=deadline) is None
    assert decide(passing=2, total=3, threshold=100, now=deadline, deadline=deadline) == Phase.ROLLBACK


def test_choosing_the_canary_passes_over_unhealthy_candidates():
    chosen, excluded = choose_canary(["a", "b", "c", "d"], 2, {"a": "offline", "c": "HTTP 500"})
    assert chosen == ["b", "d"]
    assert excluded == [("a", "offline"), ("c", "HTTP 500")]
