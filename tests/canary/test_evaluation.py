"""The pure rules: which phase changes exist, how the threshold is computed, how polls are judged."""

import pytest

from canary.choices import Criterion, Phase, RoundMode
from canary.evaluation import (
    FINAL,
    TRANSITIONS,
    Member,
    Observation,
    Step,
    TransitionError,
    action_refusal,
    allowed_actions,
    canary_size,
    change_resources,
    check_transition,
    choose_canary,
    decide_round,
    forecast,
    judge,
    new_violation_keys,
    round_mode,
    shortfall,
    stages,
    threshold_met,
)

ALLOWED = {
    (Phase.CANARY, Phase.EVALUATION),
    (Phase.CANARY, Phase.ROLLOUT),
    (Phase.CANARY, Phase.ROLLBACK),
    (Phase.EVALUATION, Phase.CANARY),  # the next step
    (Phase.EVALUATION, Phase.ROLLOUT),
    (Phase.EVALUATION, Phase.ROLLBACK),
    (Phase.ROLLOUT, Phase.SUCCEEDED),
    (Phase.ROLLOUT, Phase.FAILED),
    (Phase.ROLLOUT, Phase.ROLLBACK),  # the watched rollout failing
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


def members(*specs):
    """("passed", consecutive) pairs → Members; "failed-run" → a member whose run failed."""
    out = []
    for spec in specs:
        if spec == "failed-run":
            out.append(Member(passed=False, consecutive=0, run_failed=True))
        else:
            passed, consecutive = spec
            out.append(Member(passed=passed, consecutive=consecutive))
    return out


def test_a_round_promotes_once_enough_instances_passed_the_required_rounds_in_a_row():
    three = members((True, 3), (True, 3), (True, 3))
    assert decide_round(three, mode=RoundMode.EVALUATE, threshold=100, required=3, rounds_left=5).decision == "promote"
    early = members((True, 2), (True, 3), (True, 3))
    outcome = decide_round(early, mode=RoundMode.EVALUATE, threshold=100, required=3, rounds_left=5)
    assert outcome.decision == "" and outcome.healthy == 3 and outcome.passing == 2


def test_the_healthy_share_counts_this_rounds_healthy_polls_not_only_those_that_count_yet():
    outcome = decide_round(
        members((True, 1), (True, 1)), mode=RoundMode.EVALUATE, threshold=100, required=15, rounds_left=30
    )
    assert (outcome.healthy, outcome.passing, outcome.total) == (2, 0, 2)


def test_at_the_deadline_every_instance_not_passing_yet_is_lost_and_the_round_rolls_back():
    outcome = decide_round(
        members((True, 3), (False, 0)), mode=RoundMode.EVALUATE, threshold=100, required=1, rounds_left=0
    )
    assert (outcome.decision, outcome.why) == ("rollback", "deadline")


def test_a_round_fails_fast_once_the_threshold_can_no_longer_be_met():
    # 5 in a row needed, 3 rounds left: an instance that just failed can reach 3 at most.
    outcome = decide_round(
        members((True, 4), (False, 0)), mode=RoundMode.EVALUATE, threshold=100, required=5, rounds_left=3
    )
    assert (outcome.decision, outcome.why, outcome.possible) == ("rollback", "cannot", 1)
    # With 5 rounds left it still could: keep going.
    assert (
        decide_round(
            members((True, 4), (False, 0)), mode=RoundMode.EVALUATE, threshold=100, required=5, rounds_left=5
        ).decision
        == ""
    )
    # A failed run never passes: with a 100 % threshold that is the end at once.
    assert (
        decide_round(members((True, 1), "failed-run"), mode=RoundMode.EVALUATE, threshold=100, rounds_left=50).why
        == "cannot"
    )
    # ... and within what a 50 % threshold allows, it is not.
    assert (
        decide_round(members((True, 1), "failed-run"), mode=RoundMode.EVALUATE, threshold=50, rounds_left=50).decision
        == "promote"
    )


def test_watching_rolls_back_when_established_instances_fail_past_the_threshold():
    established = [
        Member(passed=False, consecutive=0, established=True),
        Member(passed=True, consecutive=9, established=True),
    ]
    starting = [Member(passed=False, consecutive=0), Member(passed=False, consecutive=0)]  # not evaluated yet
    assert decide_round(established + starting, mode=RoundMode.WATCH, threshold=76).decision == "rollback"
    assert decide_round(established + starting, mode=RoundMode.WATCH, threshold=75).decision == ""
    assert decide_round(starting, mode=RoundMode.WATCH, threshold=100).decision == ""  # they may still be starting
    unjudged = [Member(passed=False, consecutive=0, established=True, judged=False)]
    assert decide_round(unjudged, mode=RoundMode.WATCH, threshold=100).decision == ""


def test_the_mode_of_a_round_follows_the_deployment_state():
    assert (
        round_mode(phase=Phase.EVALUATION, forced=False, paused=False, awaiting_approval=False, applied=True)
        == RoundMode.EVALUATE
    )
    assert (
        round_mode(phase=Phase.EVALUATION, forced=False, paused=True, awaiting_approval=False, applied=True)
        == RoundMode.WATCH
    )
    assert (
        round_mode(phase=Phase.EVALUATION, forced=False, paused=False, awaiting_approval=True, applied=True)
        == RoundMode.WATCH
    )
    assert (
        round_mode(phase=Phase.CANARY, forced=False, paused=False, awaiting_approval=False, applied=False)
        == RoundMode.WATCH
    )
    assert (
        round_mode(phase=Phase.ROLLOUT, forced=True, paused=False, awaiting_approval=False, applied=True)
        == RoundMode.OBSERVE
    )
    assert (
        round_mode(phase=Phase.ROLLOUT, forced=False, paused=False, awaiting_approval=False, applied=True)
        == RoundMode.EVALUATE
    )


def test_a_rollback_is_verified_when_every_instance_is_healthy_again_and_not_after_the_last_check():
    assert (
        decide_round(members((True, 1), (True, 1)), mode=RoundMode.VERIFY, threshold=100, rounds_left=2).decision
        == "verified"
    )
    assert (
        decide_round(members((True, 1), (False, 0)), mode=RoundMode.VERIFY, threshold=100, rounds_left=2).decision == ""
    )
    assert (
        decide_round(members((True, 1), (False, 0)), mode=RoundMode.VERIFY, threshold=100, rounds_left=0).decision
        == "unverified"
    )


def test_what_falls_short_names_failed_criteria_or_too_few_rounds_in_a_row():
    assert shortfall(
        judge(
            [Criterion.HEALTH_CHECK], Observation(probe_healthy=False, probe_reason="HTTP 500"), previous_consecutive=0
        ),
        3,
    ) == ["health_check: HTTP 500"]
    short = judge(
        [Criterion.HEALTH_CHECK], Observation(probe_healthy=True), previous_consecutive=7, required_consecutive=15
    )
    assert shortfall(short, 15) == ["consecutive: healthy 8 round(s) in a row of the 15 required"]


def test_steps_end_with_the_rest_of_the_scope_unless_the_last_is_already_all_of_it():
    assert stages([Step(percentage=5), Step(percentage=25)]) == [Step(percentage=5), Step(percentage=25), FINAL]
    assert stages([Step(percentage=5), Step(percentage=100)]) == [Step(percentage=5), Step(percentage=100)]
    assert stages([Step(instances=(3, 4))]) == [Step(instances=(3, 4)), FINAL]
    assert forecast([Step(percentage=5), Step(percentage=25), Step(percentage=100)], 40) == [2, 8, 30]


def test_overlapping_changes_are_the_same_app_setting_or_os():
    assert change_resources("update_app", {"app": "nginx", "version": "2"}) & change_resources(
        "stop_app", {"app": "nginx"}
    )
    assert not change_resources("update_app", {"app": "nginx"}) & change_resources("update_app", {"app": "redis"})
    assert change_resources("set_config", {"values": {"a": 1}, "unset": ["b"]}) == {"setting a", "setting b"}
    assert change_resources("update_os", {"version": "24.04"}) == {"the OS version"}


@pytest.mark.parametrize(
    ("action", "state", "refused"),
    [
        ("promote", {"phase": Phase.EVALUATION}, ""),
        ("promote", {"phase": Phase.ROLLOUT}, "already rolling out"),
        ("rollback", {"phase": Phase.ROLLOUT}, ""),
        ("rollback", {"phase": Phase.ROLLED_BACK}, "it was rolled back"),
        ("pause", {"phase": Phase.CANARY}, ""),
        ("pause", {"phase": Phase.CANARY, "paused": True}, "already paused"),
        ("resume", {"phase": Phase.EVALUATION}, "not paused"),
        ("approve", {"phase": Phase.EVALUATION}, "not waiting for an approval"),
        ("approve", {"phase": Phase.EVALUATION, "awaiting_approval": True, "paused": True}, "resume it first"),
        ("approve", {"phase": Phase.EVALUATION, "awaiting_approval": True}, ""),
        ("pause", {"phase": Phase.ROLLBACK}, "already rolling back"),
    ],
)
def test_what_a_person_may_do_depends_on_the_phase_and_flags(action, state, refused):
    why = action_refusal(action, **state)
    assert (refused in why and why) if refused else why == ""


def test_without_the_license_a_person_may_still_pause_and_roll_back_but_not_move_on():
    state = {"phase": Phase.EVALUATION, "paused": True, "awaiting_approval": True}
    assert allowed_actions(**state) == {
        "promote": True,
        "rollback": True,
        "approve": False,  # paused: resume first
        "pause": False,
        "resume": True,
    }
    assert allowed_actions(**state, licensed=False) == {
        "promote": False,
        "rollback": True,
        "approve": False,
        "pause": False,
        "resume": False,
    }


def test_choosing_the_canary_passes_over_unhealthy_candidates():
    chosen, excluded = choose_canary(["a", "b", "c", "d"], 2, {"a": "offline", "c": "HTTP 500"})
    assert chosen == ["b", "d"]
    assert excluded == [("a", "offline"), ("c", "HTTP 500")]
