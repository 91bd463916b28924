"""The poller against real HTTP servers on loopback."""

from canary.probes import poll_many, probe

from .conftest import refused_address


def test_a_200_is_healthy_with_its_latency(health_server):
    result = probe(health_server("ok").url(), timeout=1)
    assert result.healthy
    assert result.status_code == 200
    assert result.latency_ms is not None and result.latency_ms < 1000
    assert result.reason == ""


def test_a_500_is_unhealthy_with_the_status_as_reason(health_server):
    result = probe(health_server("fail").url(), timeout=1)
    assert not result.healthy
    assert (result.status_code, result.reason) == (500, "HTTP 500")


def test_a_hang_past_the_timeout_is_unhealthy(health_server):
    result = probe(health_server("hang").url(), timeout=0.3)
    assert not result.healthy
    assert result.reason == "timed out after 0.3 s"


def test_a_refused_connection_is_unhealthy():
    result = probe(f"http://{refused_address()}/health", timeout=1)
    assert not result.healthy
    assert result.status_code is None
    assert result.reason.startswith("connection error")


def test_a_redirect_is_not_followed_and_is_unhealthy(health_server):
    server = health_server("redirect")
    result = probe(server.url(), timeout=1)
    assert not result.healthy
    assert result.status_code == 302
    assert result.reason == "redirect (HTTP 302) to /login"
    assert server.hits == 1  # /login was never requested


def test_a_round_reports_each_url_in_order_with_hangs_timed_out(health_server):
    ok, fail, redirect = health_server("ok"), health_server("fail"), health_server("redirect")
    hangs = [health_server("hang") for _ in range(5)]
    urls = [ok.url(), fail.url(), f"http://{refused_address()}/health", redirect.url()] + [h.url() for h in hangs]
    results = poll_many(urls, timeout=0.5)
    assert [r.healthy for r in results] == [True, False, False, False] + [False] * 5
    assert [r.url for r in results] == urls
    assert all("timed out" in r.reason for r in results[4:])


def test_an_empty_round_is_empty():
    assert poll_many([], timeout=1) == []


def test_a_malformed_url_is_unhealthy_not_an_error():
    (result,) = poll_many(["http://bad host name:99999/health"], timeout=0.5)
    assert not result.healthy
    assert result.reason.startswith("request error: Failed to parse")
