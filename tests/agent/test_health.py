"""The health endpoint canaries probe: 200 only when every configured check passes, the body naming
the check that failed. Real sockets and HTTP servers on loopback, and the panel's own prober."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from governance_agent.health import HealthServer
from governance_agent.system import Host, Result

from canary.probes import probe


class Local:
    """A loopback HTTP server answering with `code` (or hanging)."""

    def __init__(self, code=200, hang=0.0):
        owner = self
        self.code, self.hang = code, hang

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                time.sleep(owner.hang)
                self.send_response(owner.code)
                if owner.code in (301, 302):
                    self.send_header("Location", "/login")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ready"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local():
    servers = []

    def _make(**kw):
        servers.append(Local(**kw))
        return servers[-1]

    yield _make
    for server in servers:
        server.close()


@pytest.fixture
def health(scratch):
    started = []

    def _start(checks, host_class=Host, timeout=0.5):
        config = scratch.config(health={"checks": checks, "timeout": timeout})
        server = HealthServer(host_class.from_config(config)).start()
        started.append(server)
        return f"http://127.0.0.1:{server.port}/health"

    yield _start
    for server in started:
        server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_without_checks_the_agent_being_up_is_healthy(health):
    response = requests.get(health([]), timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": [], "note": "no health checks are configured: the agent is up"}


def test_every_check_passing_is_200_for_the_panels_own_prober(health, local):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    app = local()
    url = health([{"type": "http", "url": app.url}, {"type": "tcp", "port": port, "name": "database"}])
    result = probe(url, timeout=2)
    assert result.healthy and result.status_code == 200
    checks = requests.get(url, timeout=5).json()["checks"]
    assert [(c["name"], c["ok"]) for c in checks] == [(f"http {app.url}", True), ("database", True)]
    listener.close()


def test_a_failing_check_is_503_and_the_body_says_which_and_why(health, local):
    port = closed_port()
    bad = local(code=500)
    redirect = local(code=302)
    url = health(
        [
            {"type": "tcp", "port": port, "name": "database"},
            {"type": "http", "url": bad.url, "name": "app"},
            {"type": "http", "url": redirect.url, "name": "login"},
        ]
    )
    response = requests.get(url, timeout=5)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["failed"] == "database: connection failed: Connection refused; app: HTTP 500; login: HTTP 302"
    result = probe(url, timeout=2)
    assert not result.healthy and result.reason == "HTTP 503"


def test_a_hanging_check_fails_within_the_timeout(health, local):
    slow = local(hang=3)
    url = health([{"type": "http", "url": slow.url, "name": "slow"}], timeout=0.5)
    response = requests.get(url, timeout=5)
    assert response.status_code == 503 and response.json()["failed"] == "slow: no answer within 0.5 s"
    # The panel's prober (its default 2 s timeout) gets the agent's answer, not a timeout of its own.
    result = probe(url, timeout=2)
    assert not result.healthy and result.reason == "HTTP 503"


def test_a_systemd_check_where_systemd_is_not_pid_1_fails_saying_so(health, scratch):
    if scratch.host().systemd_running:
        pytest.skip("systemd is the service manager here")
    body = requests.get(health([{"type": "systemd", "unit": "nginx"}]), timeout=5).json()
    assert body["failed"].startswith("systemd nginx.service: systemd is not the service manager here (PID 1 is ")


def test_a_systemd_check_asks_systemctl_is_active(health):
    """systemd cannot run in CI: check the command the agent would run, and how it reads the answer."""
    asked = []

    class SystemdHost(Host):
        systemd_running = True

        def run(self, argv, **kwargs):
            asked.append(argv)
            unit = argv[-1]
            return Result(
                tuple(argv),
                0 if unit == "nginx.service" else 3,
                "active\n" if unit == "nginx.service" else "inactive\n",
            )

    url = health(
        [{"type": "systemd", "unit": "nginx"}, {"type": "systemd", "unit": "redis-server.service"}], SystemdHost
    )
    body = requests.get(url, timeout=5).json()
    assert sorted(asked) == [
        ["systemctl", "is-active", "--", "nginx.service"],
        ["systemctl", "is-active", "--", "redis-server.service"],
    ]
    assert body["failed"] == "systemd redis-server.service: redis-server.service is inactive"


def test_only_the_health_path_answers(health):
    url = health([])
    response = requests.get(url.replace("/health", "/admin"), timeout=5)
    assert response.status_code == 404 and json.loads(response.text)["health_path"] == "/health"
