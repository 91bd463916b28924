"""When rounds are due, how long they may take, and which intervals can be honoured (pure)."""

from datetime import UTC, datetime, timedelta

from canary import timing

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_rounds_are_on_the_grid_from_the_evaluation_start_and_missed_ones_are_skipped():
    assert timing.next_due(T0, 5, at(0)) == at(5)
    assert timing.next_due(T0, 5, at(4.999)) == at(5)
    assert timing.next_due(T0, 5, at(5)) == at(10)
    assert timing.next_due(T0, 1, at(7.3)) == at(8)  # a worker came back late: the next slot, not a burst
    assert timing.next_due(T0, 5, at(-3)) == T0


def test_rounds_left_counts_the_grid_rounds_after_now_up_to_the_deadline():
    deadline = at(40)
    assert timing.rounds_left(T0, 1, at(0.2), deadline) == 40  # rounds at 1..40 s
    assert timing.rounds_left(T0, 1, at(39.1), deadline) == 1
    assert timing.rounds_left(T0, 1, at(40.05), deadline) == 0  # the round at the deadline decides
    assert timing.rounds_left(T0, 7, at(0), at(20)) == 2  # 7 and 14 s; 21 s is past the deadline
    assert timing.rounds_left(T0, 1, at(0), None) is None


def test_the_probe_timeout_is_the_setting_but_at_most_half_the_interval():
    assert timing.probe_timeout(1, 2.0) == 0.5
    assert timing.probe_timeout(3, 2.0) == 1.5
    assert timing.probe_timeout(30, 2.0) == 2.0
    assert timing.probe_timeout(1, 0.1) == timing.MIN_PROBE_TIMEOUT


def test_a_one_second_interval_is_honoured_for_a_small_canary():
    assert timing.interval_problem(1, 2.0, 4) == ""
    assert timing.round_seconds(1, 2.0, 4) < 1


def test_an_interval_shorter_than_a_round_over_the_scope_is_refused_with_the_shortest_that_works():
    problem = timing.interval_problem(1, 2.0, 10_000)
    assert "A round over 10000 instances can take up to" in problem
    shortest = int(problem.rsplit("at least ", 1)[1].split(" s")[0])
    assert timing.interval_problem(shortest, 2.0, 10_000) == ""
    assert timing.interval_problem(shortest - 1, 2.0, 10_000) != ""


def test_intervals_outside_one_second_to_one_hour_are_refused():
    assert "between 1 second and 1 hour" in timing.interval_problem(0, 2.0, 1)
    assert "between 1 second and 1 hour" in timing.interval_problem(3601, 2.0, 1)


def test_c_rounds_in_a_row_need_c_minus_one_intervals():
    assert timing.rounds_fit(15, 1, 40)
    assert timing.rounds_fit(41, 1, 40)  # rounds at 0, 1, …, 40 s
    assert not timing.rounds_fit(42, 1, 40)
    assert not timing.rounds_fit(5, 10, 30)
