"""Canary test helpers: real loopback health servers whose answer can be switched, and instances pointing at them."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from fleet.choices import InstanceStatus, RunStatus
from fleet.models import CommandRun, Instance
from fleet.services import agent_commands_fetch, command_run_report


class HealthServer:
    """A real HTTP server on 127.0.0.1 answering GET with `mode`: ok (200), fail (500), hang, redirect (302)."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.release = threading.Event()
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                owner.hits += 1
                if owner.mode == "hang":
                    owner.release.wait(30)
                    return
                if owner.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/login")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                code = 200 if owner.mode == "ok" else 500
                body = b'{"status": "ok"}' if code == 200 else b'{"status": "broken"}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path="/health"):
        return f"http://{self.address}{path}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def refused_address() -> str:
    """host:port where nothing listens (the port was just freed), so connecting is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"127.0.0.1:{port}"


@pytest.fixture
def health_server():
    servers = []

    def _make(mode="ok"):
        server = HealthServer(mode)
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def _short_probe_timeout(settings):
    settings.CANARY_PROBE_TIMEOUT = 0.5
    settings.CANARY_RECHECK_SECONDS = 1


@pytest.fixture
def canary_license(install_license):
    return install_license("business")


@pytest.fixture
def make_fleet(db, health_server):
    """make_fleet(3) → 3 online instances web-1..web-3, each with its own healthy health server."""

    def _make(count, *, prefix="web", mode="ok"):
        result = []
        for n in range(1, count + 1):
            server = health_server(mode)
            inst = Instance.objects.create(
                name=f"{prefix}-{n}",
                address=server.address,
                status=InstanceStatus.ONLINE,
                last_seen_at=timezone.now(),
                apps=[{"name": "web-app", "version": "1.0", "running": True}],
            )
            inst.server = server
            result.append(inst)
        return result

    return _make


def agent_finishes(runs, status=RunStatus.COMPLETED, error=""):
    """Play the agent: fetch and report each run (through fleet's services, as a real agent would)."""
    for run in runs:
        run = CommandRun.objects.select_related("instance").get(pk=run.pk)
        agent_commands_fetch(instance=run.instance)
        command_run_report(instance=run.instance, run_id=run.pk, status=status, error=error)


def servers_of(instances):
    return {i.name: i.server for i in instances}
