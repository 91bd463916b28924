"""A simulated fleet: N agents in one process, each with a real HTTP health endpoint on 127.0.0.1.

Used by `manage.py simulate_fleet` (the demo) and by the tests of every app built on the fleet.
Each simulated instance

1. registers with a registration token (or reuses a credential saved in `credentials_file`, which also
   keeps each instance's state as the commands left it, so a restarted fleet resumes where it was),
2. heartbeats its full state (OS, apps, settings, available updates) every `heartbeat_interval`,
3. pulls commands every `command_poll_interval`, reports progress, waits a realistic delay, applies
   them with `fleet.commands.apply` (the panel's own command semantics) and reports the result
   (a command that cannot apply, e.g. updating an app that is not installed, fails with the reason),
4. serves `/health` and `/api/status` on its own port.

Faults follow the instance's state, so a deployment can break an instance the way it would in life:
an installed app version containing `+fail` makes /health answer 500, `+hang` makes it hang (bounded
by `hang_seconds`), `+down` closes the port (connection refused). The setting `sim.health` =
fail/hang/down does the same. `inject(name, health)` forces a fault from outside ("ok" removes it;
a fault that comes from the state stays), `fail_commands(name, True)` makes every command fail (as a
broken package mirror would), and `set_offline(name, True)` stops heartbeats and command polling. Everything runs on daemon threads; `stop()` returns within a few seconds.

Only `requests` and the standard library are needed, plus fleet.commands for command semantics.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from fleet.commands import CommandParamsError, apply

logger = logging.getLogger("fleet.simulator")

HEALTH_MODES = ("ok", "fail", "hang", "down")
AGENT_VERSION = "sim-1.0"
LATEST_OS = "24.04.3"
OS_VERSIONS = ("24.04.1", "24.04.2", "24.04.3")
# name: (versions an instance may run, latest version, chance it is installed)
APP_CATALOG = {
    "monitoring-agent": (("2.3.1", "2.4.0"), "2.4.0", 0.9),
    "log-collector": (("1.8.0", "1.9.2"), "1.9.2", 0.8),
    "nginx": (("1.24.0", "1.26.2"), "1.26.2", 0.5),
    "postgresql": (("15.8", "16.4"), "16.4", 0.3),
    "redis": (("7.2.5",), "7.2.5", 0.2),
    "outdated-db": (("1.4",), "1.4", 0.15),
}


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdecimal() else 0 for p in version.split("+")[0].replace("-", ".").split("."))


def health_from_state(state: dict) -> str:
    """The health fault an instance's own state causes: down > hang > fail > ok."""
    marks = {str(a.get("version", "")) for a in state.get("apps") or []}
    setting = str((state.get("settings") or {}).get("sim.health", "ok")).lower()
    for mode in ("down", "hang", "fail"):
        if setting == mode or any(f"+{mode}" in v for v in marks):
            return mode
    return "ok"


def initial_state(rng: random.Random) -> dict:
    apps = []
    for name, (versions, _latest, chance) in APP_CATALOG.items():
        if rng.random() < chance:
            apps.append({"name": name, "version": rng.choice(versions), "running": rng.random() > 0.05})
    return {
        "os_version": rng.choice(OS_VERSIONS),
        "apps": apps,
        "settings": {
            "ssh.password_auth": rng.random() < 0.2,
            "ssh.root_login": False,
            "firewall.enabled": rng.random() < 0.9,
            "auto_updates.enabled": rng.random() < 0.6,
            "ntp.enabled": True,
        },
    }


class SimInstance:
    """One simulated server: an agent loop and a health server. Public: name, port, address, state."""

    def __init__(self, fleet: SimulatedFleet, name: str, rng: random.Random, port: int = 0):
        self.fleet, self.name, self.rng = fleet, name, rng
        self.state = initial_state(rng)
        saved = (fleet.saved_credentials.get(name) or {}).get("state")
        if isinstance(saved, dict) and isinstance(saved.get("apps"), list):
            self.state = saved  # what the commands applied before a restart, not the seed's first state
        self.credential: str | None = None
        self.instance_id: int | None = None
        self.offline = False
        self.injected: str | None = None
        self.failing_commands = False
        self.registered = threading.Event()
        self.lock = threading.RLock()
        self.commands_done = 0
        self.results: dict[int, dict] = {}  # run id → the result sent, for a run delivered twice
        self.last_error = ""
        self.gave_up = False
        self.retry_after = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self._agent_thread: threading.Thread | None = None
        self._session = requests.Session()
        self.port = port
        self._start_server()  # binds now, so the address is known before registering

    # --- health endpoint ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def health(self) -> str:
        """The health the endpoint shows now: an injected fault wins over the state's own."""
        with self.lock:
            from_state = health_from_state(self.state)
        if self.injected and self.injected != "ok":
            return self.injected
        return from_state

    def _start_server(self):
        instance = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] not in ("/health", "/api/status"):
                    return self._send(404, {"error": "not_found"})
                mode = instance.health
                if mode == "hang":
                    # Bounded: answer (too late) after hang_seconds, or at once when the fleet stops.
                    instance.fleet._stopping.wait(instance.fleet.hang_seconds)
                    return self._send(504, {"status": "hang"})
                if mode == "fail":
                    return self._send(500, {"status": "fail", "error": "simulated failure"})
                if self.path.startswith("/api/status"):
                    return self._send(200, instance.status_body())
                return self._send(200, {"status": "ok"})

            def _send(self, code, body):
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (e.g. a health poller's timeout during a hang)

            def log_message(self, format, *args):
                pass

        try:
            server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        except OSError:
            if not self.port:
                raise
            # The saved port is taken: take any. The panel keeps the old address until an admin edits it
            # (PATCH /api/fleet/instances/{id}); the health endpoint is then reachable again.
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._server_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"sim-http-{self.name}", daemon=True
        )
        self._server_thread.start()

    def _stop_server(self):
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if self._server_thread:
                self._server_thread.join(timeout=2)

    def sync_health_server(self):
        """'down' closes the port (connection refused); any other health reopens it on the same port."""
        down = self.health == "down"
        with self.lock:
            if down and self._server is not None:
                self._stop_server()
            elif not down and self._server is None and not self.fleet._stopping.is_set():
                self._start_server()

    def status_body(self) -> dict:
        with self.lock:
            return {
                "name": self.name,
                "status": "ok",
                "os_version": self.state["os_version"],
                "apps": [dict(a) for a in self.state["apps"]],
                "agent_version": AGENT_VERSION,
            }

    # --- agent -------------------------------------------------------------------------------

    def heartbeat_payload(self) -> dict:
        with self.lock:
            state = json.loads(json.dumps(self.state))
        state["updates"] = self.fleet.available_updates(state)
        state["agent_version"] = AGENT_VERSION
        return state

    def _url(self, path: str) -> str:
        return f"{self.fleet.base_url}/api/agent/{path}"

    def _headers(self) -> dict:
        return {"Authorization": f"Agent {self.credential}"}

    def register(self) -> bool:
        saved = self.fleet.saved_credentials.get(self.name)
        if saved and not self.credential:
            self.credential, self.instance_id = saved["credential"], saved.get("instance_id")
            resp = self._session.post(
                self._url("heartbeat"), json=self.heartbeat_payload(), headers=self._headers(), timeout=10
            )
            if resp.status_code == 200:
                self.registered.set()
                return True
            self.credential = None  # the panel forgot us (database reset): register again
        body = {
            "token": self.fleet.token,
            "name": self.name,
            "hostname": f"{self.name}.sim.local",
            "address": self.address,
            "os_version": self.state["os_version"],
        }
        resp = self._session.post(self._url("register"), json=body, timeout=10)
        if resp.status_code != 201:
            self.last_error = f"register: HTTP {resp.status_code} {resp.text[:200]}"
            if resp.status_code == 429:
                self.retry_after = float(resp.headers.get("Retry-After") or 5)
            elif resp.status_code < 500:
                self.gave_up = True  # a refused token or a taken name will not get better by retrying
                logger.error("%s cannot register: %s", self.name, self.last_error)
            return False
        data = resp.json()
        self.credential, self.instance_id = data["credential"], data["instance_id"]
        self.fleet.remember_credential(self)
        self.registered.set()
        return True

    def heartbeat(self) -> None:
        resp = self._session.post(
            self._url("heartbeat"), json=self.heartbeat_payload(), headers=self._headers(), timeout=10
        )
        if resp.status_code != 200:
            self.last_error = f"heartbeat: HTTP {resp.status_code} {resp.text[:200]}"
            logger.warning("%s heartbeat refused: %s", self.name, self.last_error)

    def poll_commands(self) -> int:
        resp = self._session.get(self._url("commands"), headers=self._headers(), timeout=10)
        if resp.status_code != 200:
            self.last_error = f"commands: HTTP {resp.status_code} {resp.text[:200]}"
            return 0
        commands = resp.json().get("commands", [])
        for command in commands:
            if self.fleet._stopping.is_set():
                break
            self.execute(command)
        return len(commands)

    def execute(self, command: dict) -> None:
        run_url = self._url(f"commands/{command['run_id']}/result")
        kind, params = command["kind"], command.get("params") or {}
        done = self.results.get(command["run_id"])
        if done is not None:  # delivered again (the panel did not hear from us): only the result again
            self._session.post(run_url, json=done, headers=self._headers(), timeout=10)
            return
        self._session.post(
            run_url,
            json={"status": "running", "progress": 10, "progress_message": f"starting {kind}"},
            headers=self._headers(),
            timeout=10,
        )
        low, high = self.fleet.command_delay
        self.fleet._stopping.wait(self.rng.uniform(low, high))
        with self.lock:
            try:
                if self.failing_commands:
                    raise CommandParamsError("simulated failure (fail_commands)")
                new_state = apply(kind, params, self.state)
            except CommandParamsError as exc:
                result = {"status": "failed", "error": f"{kind} failed: {exc}"}
            else:
                self.state.update(new_state)
                result = {"status": "completed", "output": f"{kind} {json.dumps(params, sort_keys=True)}: done"}
        if result["status"] == "completed":
            self.fleet.remember_credential(self)  # the applied change survives a restart
        self.sync_health_server()
        self.results[command["run_id"]] = result
        self._session.post(run_url, json=result, headers=self._headers(), timeout=10)
        self.commands_done += 1

    def run(self):
        """The agent loop: register, then heartbeat and poll on their intervals until the fleet stops."""
        stopping = self.fleet._stopping
        backoff = 0.2
        while not stopping.is_set() and not self.registered.is_set():
            try:
                if self.register():
                    break
            except requests.RequestException as exc:
                self.last_error = f"register: {exc}"
            if self.gave_up:
                return
            stopping.wait(self.retry_after or backoff)
            self.retry_after = 0.0
            backoff = min(backoff * 2, 5.0)
        next_beat = next_poll = 0.0
        while not stopping.is_set():
            now = time.monotonic()
            if self.offline:
                stopping.wait(0.1)
                continue
            try:
                if now >= next_beat:
                    self.heartbeat()
                    next_beat = now + self.fleet.heartbeat_interval
                if now >= next_poll:
                    if self.poll_commands():
                        next_beat = 0.0  # report the new state at once
                    next_poll = time.monotonic() + self.fleet.command_poll_interval
            except requests.RequestException as exc:
                self.last_error = str(exc)
                stopping.wait(1.0)
                continue
            stopping.wait(max(0.01, min(next_beat, next_poll) - time.monotonic()))

    def start(self):
        self._agent_thread = threading.Thread(target=self.run, name=f"sim-agent-{self.name}", daemon=True)
        self._agent_thread.start()

    def stop(self, timeout: float = 3.0):
        if self._agent_thread:
            self._agent_thread.join(timeout=timeout)
        with self.lock:
            self._stop_server()
        self._session.close()


class SimulatedFleet:
    """N simulated instances against a panel at `base_url`, registering with `token`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        count: int,
        name_prefix: str = "sim",
        heartbeat_interval: float = 1.0,
        command_poll_interval: float = 0.5,
        command_delay: tuple[float, float] = (0.05, 0.2),
        seed: int = 0,
        hang_seconds: float = 30.0,
        credentials_file: str | Path | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token, self.count, self.name_prefix = token, count, name_prefix
        self.heartbeat_interval, self.command_poll_interval = heartbeat_interval, command_poll_interval
        self.command_delay, self.seed, self.hang_seconds = command_delay, seed, hang_seconds
        self.credentials_file = Path(credentials_file) if credentials_file else None
        self.saved_credentials = self._load_credentials()
        self._credentials_lock = threading.Lock()
        self._stopping = threading.Event()
        self.instances: list[SimInstance] = []
        # Stable release dates, so unchanged instances send identical heartbeats.
        base = datetime.now(UTC).replace(microsecond=0)
        rng = random.Random(seed)
        self.released_at = {
            name: (base - timedelta(hours=rng.randint(6, 24 * 20))).isoformat() for name in [*APP_CATALOG, "os"]
        }

    # --- public interface ----------------------------------------------------------------------

    def start(self) -> SimulatedFleet:
        width = max(2, len(str(self.count)))
        for i in range(1, self.count + 1):
            name = f"{self.name_prefix}-{i:0{width}d}"
            port = (self.saved_credentials.get(name) or {}).get("port", 0)
            self.instances.append(SimInstance(self, name, random.Random(self.seed * 10007 + i), port=port))
        for inst in self.instances:
            inst.start()
        return self

    def wait_registered(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for inst in self.instances:
            while not inst.registered.wait(0.1):
                if inst.gave_up or time.monotonic() > deadline:
                    why = "was refused" if inst.gave_up else f"did not register within {timeout}s"
                    raise TimeoutError(f"{inst.name} {why}: {inst.last_error or 'no answer'}")

    def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + 5
        for inst in self.instances:
            inst.stop(timeout=max(0.1, deadline - time.monotonic()))

    def get(self, name: str) -> SimInstance:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(f"no simulated instance named {name!r}")

    def inject(self, name: str, health: str = "ok") -> None:
        """Force the health endpoint of `name` to fail/hang/down; "ok" removes the injected fault."""
        if health not in HEALTH_MODES:
            raise ValueError(f"health must be one of {', '.join(HEALTH_MODES)}")
        inst = self.get(name)
        inst.injected = None if health == "ok" else health
        inst.sync_health_server()

    def fail_commands(self, name: str, failing: bool = True) -> None:
        """Make every command `name` runs fail (True) or apply again (False)."""
        self.get(name).failing_commands = failing

    def set_offline(self, name: str, offline: bool = True) -> None:
        """Stop (or resume) heartbeats and command polling of `name`, as if its agent lost the network."""
        self.get(name).offline = offline

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- internals -----------------------------------------------------------------------------

    def available_updates(self, state: dict) -> list[dict]:
        updates = []
        if _version_key(state.get("os_version") or "0") < _version_key(LATEST_OS):
            updates.append({"kind": "os", "name": "os", "version": LATEST_OS, "released_at": self.released_at["os"]})
        for app in state.get("apps") or []:
            entry = APP_CATALOG.get(app["name"])
            if entry and _version_key(str(app["version"])) < _version_key(entry[1]):
                updates.append(
                    {
                        "kind": "app",
                        "name": app["name"],
                        "version": entry[1],
                        "released_at": self.released_at[app["name"]],
                    }
                )
        return updates

    def _load_credentials(self) -> dict:
        if self.credentials_file and self.credentials_file.exists():
            try:
                # Tried first at start-up; a credential the panel no longer knows falls back to registering.
                return json.loads(self.credentials_file.read_text()).get("instances", {})
            except (OSError, ValueError):
                logger.warning("ignoring unreadable %s", self.credentials_file)
        return {}

    def remember_credential(self, inst: SimInstance) -> None:
        if not self.credentials_file:
            return
        with self._credentials_lock:
            with inst.lock:
                state = json.loads(json.dumps(inst.state))
            self.saved_credentials[inst.name] = {
                "credential": inst.credential,
                "instance_id": inst.instance_id,
                "port": inst.port,
                "state": state,
            }
            tmp = self.credentials_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"instances": self.saved_credentials}))
            tmp.chmod(0o600)
            tmp.replace(self.credentials_file)
