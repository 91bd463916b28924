"""The poller against real HTTP servers on loopback, and the outbound rules it applies before connecting."""

import select
import socket

import pytest
from django.utils import timezone

from canary import probes
from canary.probes import Target, poll_many
from canary.services import probe_instances
from common.net import resolve_outbound
from fleet.choices import InstanceStatus
from fleet.models import Instance

from .conftest import refused_address


def target_of(server_or_address, path="/health") -> Target:
    address = getattr(server_or_address, "address", server_or_address)
    host, port = address.rsplit(":", 1)
    return Target(host, int(port), path)


def probe(target, timeout=1.0):
    (result,) = poll_many([target], timeout=timeout, resolve=resolve_outbound)
    return result


def test_a_200_is_healthy_with_its_latency(health_server):
    result = probe(target_of(health_server("ok")))
    assert result.healthy
    assert result.status_code == 200
    assert result.latency_ms is not None and result.latency_ms < 1000
    assert result.reason == ""


def test_a_500_is_unhealthy_with_the_status_as_reason(health_server):
    result = probe(target_of(health_server("fail")))
    assert not result.healthy
    assert (result.status_code, result.reason) == (500, "HTTP 500")


def test_a_hang_past_the_timeout_is_unhealthy(health_server):
    result = probe(target_of(health_server("hang")), timeout=0.3)
    assert not result.healthy
    assert result.reason == "timed out after 0.3 s"


def test_a_refused_connection_is_unhealthy():
    result = probe(target_of(refused_address()))
    assert not result.healthy
    assert result.status_code is None
    assert result.reason == "connection error: connection refused"


def test_a_redirect_is_not_followed_and_is_unhealthy(health_server):
    server = health_server("redirect")
    result = probe(target_of(server))
    assert not result.healthy
    assert result.status_code == 302
    assert result.reason == "redirect (HTTP 302) to /login"
    assert server.hits == 1  # /login was never requested


def test_a_round_reports_each_target_in_order_with_hangs_timed_out_and_ends_in_time(health_server):
    ok, fail, redirect = health_server("ok"), health_server("fail"), health_server("redirect")
    hangs = [health_server("hang") for _ in range(5)]
    targets = [target_of(s) for s in (ok, fail, refused_address(), redirect, *hangs)]
    results = poll_many(targets, timeout=0.5, resolve=resolve_outbound)
    assert [r.healthy for r in results] == [True, False, False, False] + [False] * 5
    assert [r.url for r in results] == [t.url for t in targets]
    assert all("timed out" in r.reason for r in results[4:])


def test_the_request_is_a_get_of_the_path_with_the_instances_own_host_header(health_server):
    server = health_server("ok")
    seen = []
    original = probes._request
    probes._request = lambda target: seen.append(original(target)) or original(target)
    try:
        probe(Target("localhost", server.port, "/api/status?full=1"))
    finally:
        probes._request = original
    assert seen[0].startswith(f"GET /api/status?full=1 HTTP/1.1\r\nHost: localhost:{server.port}\r\n".encode())


def test_an_empty_round_is_empty():
    assert poll_many([], timeout=1, resolve=resolve_outbound) == []


def test_a_name_that_does_not_resolve_is_unhealthy_with_the_uniform_message():
    result = probe(Target("no-such-host.invalid", 80, "/health"), timeout=0.5)
    assert not result.healthy
    assert result.reason == "The panel could not reach no-such-host.invalid:80."


# --- Outbound rules: before any connection ---------------------------------------------------------


@pytest.fixture
def denied_listener(settings):
    """A real listening socket on 127.0.0.5, which the settings deny: it must never see a connection."""
    settings.OUTBOUND_DENY_NETWORKS = [*settings.OUTBOUND_DENY_NETWORKS, "127.0.0.5/32"]
    sock = socket.socket()
    sock.bind(("127.0.0.5", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def accepted_any(sock) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def instance(name, address):
    return Instance.objects.create(
        name=name, address=address, status=InstanceStatus.ONLINE, last_seen_at=timezone.now()
    )


def test_a_denied_address_is_refused_as_the_polls_error_and_never_connected_to(db, denied_listener):
    port = denied_listener.getsockname()[1]
    inst = instance("sneaky", f"127.0.0.5:{port}")
    result = probe_instances([inst], "/health", 0.5)[inst.pk]
    assert not result.healthy and result.status_code is None and result.latency_ms is None
    assert "could not reach 127.0.0.5" in result.reason and "OUTBOUND_DENY_NETWORKS" in result.reason
    assert not accepted_any(denied_listener)


def test_a_name_resolving_to_a_denied_address_is_refused_too(db, settings, denied_listener, monkeypatch):
    port = denied_listener.getsockname()[1]
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.5" if host == "evil.test" else host, *a, **k)
    )
    inst = instance("rebinding", f"evil.test:{port}")
    result = probe_instances([inst], "/health", 0.5)[inst.pk]
    assert "could not reach evil.test" in result.reason
    assert not accepted_any(denied_listener)


@pytest.mark.parametrize("address", ["169.254.169.254:80", "metadata.google.internal", "metadata.google.internal:80"])
def test_cloud_metadata_addresses_are_never_contacted(db, monkeypatch, address):
    connects, lookups = [], []
    monkeypatch.setattr(probes, "_open", lambda *a, **k: connects.append(a))
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: lookups.append(host) or real(host, *a, **k))
    inst = instance("metadata", address)
    result = probe_instances([inst], "/latest/meta-data/", 0.5)[inst.pk]
    assert not result.healthy
    assert "could not reach" in result.reason and "OUTBOUND_DENY_NETWORKS" in result.reason
    assert connects == []
    assert "metadata.google.internal" not in lookups  # refused by name, before any DNS query


def test_an_address_that_is_not_host_and_port_is_not_polled(db):
    inst = instance("odd", "user:pw@127.0.0.1:58990/internal?x=")
    result = probe_instances([inst], "/health", 0.5)[inst.pk]
    assert not result.healthy and "not host[:port]" in result.reason


def test_an_answer_that_arrived_in_time_is_read_even_when_the_loop_itself_falls_behind(health_server, monkeypatch):
    """A stalled loop (thousands of connections on a busy worker) must not turn an answer waiting in the
    socket buffer into "timed out": what is there is read before anything expires. The clock is faked
    (pure loop logic); the server and the socket are real."""
    server = health_server("ok")
    skew = {"seconds": 0.0}
    real_monotonic, real_ready = probes.time.monotonic, probes._Round._ready
    monkeypatch.setattr(probes.time, "monotonic", lambda: real_monotonic() + skew["seconds"])

    def ready_then_stall(self, probe):
        sent_before = probe.sent
        real_ready(self, probe)
        if probe.sent and not sent_before:  # the request is out: the answer lands while the loop is busy
            select.select([probe.sock], [], [], 5)  # (real) until the answer is in the socket buffer
            skew["seconds"] += 0.6  # the loop comes back after the probe's 0.5 s expiry, before the deadline

    monkeypatch.setattr(probes._Round, "_ready", ready_then_stall)
    (result,) = poll_many([target_of(server)], timeout=0.5, resolve=resolve_outbound)
    assert result.healthy, result.reason
    assert result.status_code == 200
