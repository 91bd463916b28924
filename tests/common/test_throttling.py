"""The fixed-window API throttle: one cache counter per client and window."""

from types import SimpleNamespace

import pytest
from django.core.cache import cache

from common.throttling import ScopedFixedWindowThrottle


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


class View:
    throttle_scope = "agent"


def request_from(pk):
    return SimpleNamespace(user=SimpleNamespace(pk=pk, is_authenticated=True), META={"REMOTE_ADDR": "10.0.0.1"})


def make_throttle(now, rates):
    throttle = ScopedFixedWindowThrottle()
    throttle.THROTTLE_RATES = rates
    throttle.timer = lambda: now
    return throttle


def test_the_limit_holds_within_a_window_and_resets_in_the_next():
    rates = {"agent": "3/min"}
    allowed = [make_throttle(600.0 + i, rates).allow_request(request_from("agent:a"), View) for i in range(5)]
    assert allowed == [True, True, True, False, False]
    assert make_throttle(660.0, rates).allow_request(request_from("agent:a"), View) is True


def test_clients_have_separate_counters():
    rates = {"agent": "1/min"}
    assert make_throttle(600.0, rates).allow_request(request_from("agent:a"), View)
    assert not make_throttle(600.5, rates).allow_request(request_from("agent:a"), View)
    assert make_throttle(600.5, rates).allow_request(request_from("agent:b"), View)


def test_a_refused_request_is_told_when_the_window_ends():
    rates = {"agent": "1/min"}
    make_throttle(600.0, rates).allow_request(request_from("agent:a"), View)
    refused = make_throttle(615.0, rates)
    assert not refused.allow_request(request_from("agent:a"), View)
    assert refused.wait() == pytest.approx(45.0)


def test_a_scope_without_a_rate_is_not_throttled():
    class Unscoped:
        throttle_scope = None

    assert all(make_throttle(600.0, {}).allow_request(request_from("agent:a"), Unscoped) for _ in range(10))
