"""The health endpoint the panel's canary deployments probe: `GET <health.path>` on `health.listen`.

200 only when every configured check passes; otherwise 503, and the JSON body says which check
failed and why. Checks: an HTTP GET of a local URL answering 2xx (redirects are not followed), a
systemd unit that is active (`systemctl is-active`), a TCP port that accepts a connection. They run
concurrently, each bounded by `health.timeout`, so an answer comes within about one timeout — below
the panel's probe timeout (2 s by default).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from .config import HealthCheck

logger = logging.getLogger("governance_agent.health")


def check_http(check: HealthCheck, timeout: float) -> str:
    try:
        with requests.Session() as session:
            session.trust_env = False  # a local URL: never through a proxy
            response = session.get(check.target, timeout=timeout, allow_redirects=False, stream=True)
            response.close()
    except requests.Timeout:
        return f"no answer within {timeout:g} s"
    except requests.RequestException as exc:
        return f"connection failed: {_short(exc)}"
    if 200 <= response.status_code < 300:
        return ""
    return f"HTTP {response.status_code}"


def check_tcp(check: HealthCheck, timeout: float) -> str:
    host, port = check.host_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except TimeoutError:
        return f"no connection within {timeout:g} s"
    except OSError as exc:
        return f"connection failed: {exc.strerror or exc}"


def check_systemd(check: HealthCheck, timeout: float, host) -> str:
    if not host.systemd_running:
        return f"systemd is not the service manager here (PID 1 is {host.pid1()})"
    result = host.run(["systemctl", "is-active", "--", check.target], timeout=timeout)
    state = result.stdout.strip() or result.why()
    return "" if result.ok and state == "active" else f"{check.target} is {state}"


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text[:200]


class Checker:
    def __init__(self, host):
        self.host = host
        self.config = host.config
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(self.config.health_checks))))

    def _one(self, check: HealthCheck) -> str:
        timeout = self.config.health_timeout
        try:
            if check.type == "http":
                return check_http(check, timeout)
            if check.type == "tcp":
                return check_tcp(check, timeout)
            return check_systemd(check, timeout, self.host)
        except Exception as exc:  # a check that breaks is a failed check, not a broken endpoint
            logger.exception("health check %s", check.name)
            return f"check error: {exc}"

    def run(self) -> tuple[bool, dict]:
        """(healthy, body) of one round of every check."""
        checks = self.config.health_checks
        futures = [self._pool.submit(self._one, c) for c in checks]
        results = []
        for check, future in zip(checks, futures, strict=True):
            try:
                reason = future.result(timeout=self.config.health_timeout + 0.5)
            except Exception:
                reason = f"no result within {self.config.health_timeout:g} s"
            results.append({"name": check.name, "type": check.type, "ok": not reason, "reason": reason})
        failed = [r for r in results if not r["ok"]]
        body = {"status": "fail" if failed else "ok", "checks": results}
        if failed:
            body["failed"] = "; ".join(f"{r['name']}: {r['reason']}" for r in failed)
        elif not checks:
            body["note"] = "no health checks are configured: the agent is up"
        return not failed, body


class HealthServer:
    """A small threaded HTTP server on `health.listen` (port 0 picks a free port: see `port`)."""

    def __init__(self, host, checker: Checker | None = None):
        self.config = host.config
        self.checker = checker or Checker(host)
        address, _, port = self.config.health_listen.rpartition(":")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "governance-agent"
            sys_version = ""

            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path.split("?", 1)[0] != owner.config.health_path:
                    return self._send(404, {"error": "not_found", "health_path": owner.config.health_path})
                healthy, body = owner.checker.run()
                return self._send(200 if healthy else 503, body)

            def do_HEAD(self):  # noqa: N802
                self.do_GET()

            def _send(self, code: int, body: dict):
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError:
                    pass  # the prober gave up

            def log_message(self, format, *args):
                logger.debug("health %s", format % args)

        family = socket.AF_INET6 if ":" in address.strip("[]") else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.server = Server((address.strip("[]"), int(port)), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
