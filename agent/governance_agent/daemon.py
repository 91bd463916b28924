"""The agent's life: register once, then heartbeat, take commands and carry them out.

Two threads share the work. The main loop heartbeats every `heartbeat_interval` (the panel says how
often), asks for commands when the worker is idle and re-sends results the panel has not
acknowledged. The worker carries out commands one at a time (and the periodic `apt-get update`),
so a long install never stops the heartbeats that keep the server online in the panel.

When the panel cannot be reached the loop waits with an exponential backoff (1 s doubling to 60 s,
with jitter), keeps gathering the state into the state file, and sends it the moment the panel
answers again. A run is written into the journal before it starts (store.State), so a run that
arrives twice, or is found again after a restart, is never carried out twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import queue
import random
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import actions
from .actions.apt import APT_ENV
from .health import HealthServer
from .panel import Panel, PanelError, Unreachable
from .sources import Collector
from .store import State, load_credential, now_iso, save_credential
from .system import Host

logger = logging.getLogger("governance_agent")
BACKOFF_START, BACKOFF_MAX, REFUSED_WAIT = 1.0, 60.0, 300.0
STOP_GRACE_SECONDS = 60


class AgentError(Exception):
    """The agent cannot go on; the message tells the operator what to do."""


class Backoff:
    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_MAX):
        self.start, self.cap, self.current = start, cap, 0.0

    def next(self) -> float:
        self.current = min(self.cap, self.current * 2 if self.current else self.start)
        return self.current * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.current = 0.0


def acquire_lock(state_dir: str) -> object:
    """One agent per machine: hold an exclusive lock on <state_dir>/agent.lock while running."""
    Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = open(Path(state_dir) / "agent.lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AgentError(f"another governance-agent is running (it holds {state_dir}/agent.lock)")
    return handle


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def heartbeat_body(payload: dict) -> bytes:
    """Canonical JSON: the same state is the same bytes, which the panel answers with one UPDATE."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Agent:
    def __init__(self, config, *, dry_run: bool = False, insecure_dev: bool = False):
        self.config, self.dry_run = config, dry_run
        self.host = Host.from_config(config)
        self.state = State(config.state_file)
        self.collector = Collector(self.host, self.state, dry_run=dry_run)
        self.panel = Panel(config, insecure_dev=insecure_dev)
        self.stopping = threading.Event()
        self.heartbeat_interval = 15.0
        self.health: HealthServer | None = None
        self.registration: dict | None = None
        self._work: queue.Queue = queue.Queue()
        self._busy = threading.Event()
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._problems: set[str] = set()
        self._last_body: bytes | None = None

    # --- registration ------------------------------------------------------------------------

    def health_address(self) -> str:
        """host:port where the panel reaches the health endpoint (config, else the address facing the panel)."""
        if self.config.address:
            return self.config.address
        listen_host = self.config.health_listen.rpartition(":")[0].strip("[]")
        port = self.health.port if self.health else int(self.config.health_listen.rpartition(":")[2])
        if not port:
            raise AgentError(
                "health.listen has port 0, so the health port is only known once `run` starts: give health.listen "
                "a port, or panel.address, before registering on its own (`run` registers by itself too)"
            )
        if listen_host not in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard is what we test for
            return f"[{listen_host}]:{port}" if ":" in listen_host else f"{listen_host}:{port}"
        panel = urlsplit(self.config.panel_url)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((panel.hostname, panel.port or 443))  # UDP: no packet is sent
                ip = probe.getsockname()[0]
        except OSError:
            ip = socket.gethostname()
        return f"{ip}:{port}"

    def load_registration(self) -> dict | None:
        self.registration = load_credential(self.config.credential_file)
        if self.registration:
            self.panel.credential = self.registration["credential"]
        return self.registration

    def register(self, *, token: str = "", force: bool = False) -> dict:
        existing = self.load_registration()
        if existing and not force:
            raise AgentError(
                f"already registered as {existing.get('name')} (instance {existing.get('instance_id')}) with "
                f"{existing.get('panel_url')}; `register --force` registers again"
            )
        token = token or self.config.registration_token
        if not token:
            raise AgentError("no registration token: set panel.registration_token or pass --token")
        report = self.collector.collect()
        answer = self.panel.register(
            token=token,
            name=self.config.name,
            hostname=socket.getfqdn(),
            address=self.health_address(),
            os_version=report.payload["os_version"],
        )
        data = {
            "credential": answer["credential"],
            "instance_id": answer.get("instance_id"),
            "name": answer.get("name", self.config.name),
            "panel_url": self.config.panel_url,
            "registered_at": now_iso(),
        }
        save_credential(self.config.credential_file, data)
        self.registration, self.panel.credential = data, data["credential"]
        self.heartbeat_interval = float(answer.get("heartbeat_interval") or self.heartbeat_interval)
        logger.info("registered as %s (instance %s)", data["name"], data["instance_id"])
        return data

    def _ensure_registered(self) -> None:
        if self.load_registration():
            return
        if not self.config.registration_token:
            raise AgentError("not registered: run `governance-agent register` (or set panel.registration_token)")
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                self.register()
                return
            except (Unreachable, PanelError) as exc:
                if isinstance(exc, PanelError) and not isinstance(exc, Unreachable) and not exc.retry:
                    raise AgentError(f"the panel refused the registration: {exc}")
                wait = exc.retry_after or backoff.next()
                logger.warning("registration failed (%s); retrying in %.0f s", exc, wait)
                self.stopping.wait(wait)

    # --- one step each -----------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Send the state. While a command runs, the state from before it is sent again: packages
        half-way through dpkg are no state to judge (the new one goes as soon as the command ends)."""
        if self._busy.is_set() and self._last_body is not None:
            answer = self.panel.heartbeat(self._last_body)
            self.heartbeat_interval = float(answer.get("heartbeat_interval") or self.heartbeat_interval)
            return
        report = self.collector.collect()
        problems = set(report.problems)
        for problem in sorted(problems - self._problems):  # each once, not every heartbeat
            logger.warning("state: %s (its last good value is reported)", problem)
        for problem in sorted(self._problems - problems):
            logger.info("state: resolved: %s", problem)
        self._problems = problems
        with self.state.lock:
            self.state.data["last_report"] = {"at": now_iso(), "problems": report.problems, "notes": report.notes}
        self.state.save()
        self._last_body = heartbeat_body(report.payload)
        answer = self.panel.heartbeat(self._last_body)
        self.heartbeat_interval = float(answer.get("heartbeat_interval") or self.heartbeat_interval)

    def poll_commands(self) -> int:
        commands = self.panel.commands()
        if commands:
            self._busy.set()
            self._work.put(("commands", commands))
        return len(commands)

    def flush_reports(self) -> None:
        for run_id, entry in self.state.unreported():
            self._send_report(run_id, entry["result"])

    def _send_report(self, run_id: int, result: dict) -> None:
        try:
            self.panel.report(run_id, result)
        except Unreachable:
            raise
        except PanelError as exc:
            if exc.status not in (400, 404):
                raise
            # 404: not this instance's run; 400: the run already finished (the panel timed it out).
            logger.warning("the panel did not take the result of run %s: %s", run_id, exc)
        self.state.run_reported(run_id)

    # --- the worker --------------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            what, arg = item
            try:
                if what == "commands":
                    for command in arg:
                        if self.stopping.is_set():
                            # Not started, not acknowledged: the panel delivers it again (after
                            # COMMAND_REDELIVER_AFTER) to the agent that starts next, rather than this one
                            # starting an apt-get that the stop would cut off half-way.
                            logger.info("run %s not started: the agent is stopping", command.get("run_id"))
                            continue
                        self.carry_out(command)
                elif what == "refresh-lists":
                    self._refresh_lists()
            except Exception:
                logger.exception("the worker failed on %s", what)
            finally:
                self._busy.clear()
                self._wake.set()

    def carry_out(self, command: dict) -> None:
        """One delivered run: carried out once, its result journaled, then reported."""
        run_id, kind, params = int(command["run_id"]), command.get("kind", ""), command.get("params") or {}
        seen = self.state.run(run_id)
        if seen is not None and "result" in seen:
            logger.info("run %s was delivered again; it ran already, its result is sent again", run_id)
            return self._report_or_keep(run_id, seen["result"])
        if seen is not None:
            result = actions.Outcome(
                "failed",
                "",
                f"The agent stopped while this command was running (started {seen.get('started_at')}); it was "
                "not run again. Check the machine before sending it again.",
            ).as_report()
        else:
            self.state.run_started(run_id, kind, params)
            self._progress(run_id, kind)
            logger.info("run %s: %s %s%s", run_id, kind, json.dumps(params), " (dry run)" if self.dry_run else "")
            outcome = actions.execute(
                self.host,
                self.state,
                kind,
                params,
                dry_run=self.dry_run,
                timeout_seconds=_number(command.get("timeout_seconds")),
            )
            result = outcome.as_report()
            logger.info("run %s: %s %s", run_id, outcome.status, outcome.error)
        self.state.run_finished(run_id, result)
        self.collector.invalidate()
        self._report_or_keep(run_id, result)

    def _report_or_keep(self, run_id: int, result: dict) -> None:
        try:
            self._send_report(run_id, result)
        except PanelError as exc:
            logger.warning("result of run %s not delivered yet (%s); kept and sent when the panel answers", run_id, exc)

    def _progress(self, run_id: int, kind: str) -> None:
        with contextlib.suppress(PanelError):  # progress is a courtesy; the result is what counts
            self.panel.report(run_id, {"status": "running", "progress": 10, "progress_message": f"starting {kind}"})

    def _refresh_lists(self) -> None:
        result = self.host.run(["apt-get", "-q", "update"], timeout=600, env=APT_ENV)
        if not result.ok:
            logger.warning("apt-get update: %s", result.why())
        with self.state.lock:
            self.state.data["lists_refreshed_at"] = time.time()
        self.collector.invalidate()

    # --- the main loop -----------------------------------------------------------------------

    def start(self) -> Agent:
        try:
            self.health = HealthServer(self.host).start()
        except OSError as exc:  # the port is taken, the address is not this machine's...
            raise AgentError(
                f"cannot serve the health endpoint on {self.config.health_listen}: {exc.strerror or exc} "
                "(another program listens there, or the address is not this machine's): change health.listen"
            )
        logger.info("health endpoint on %s%s", self.config.health_listen.rpartition(":")[0], self.config.health_path)
        self._worker = threading.Thread(target=self._worker_loop, name="commands", daemon=True)
        self._worker.start()
        return self

    def run_forever(self) -> None:
        """Until `stopping` is set (SIGTERM/SIGINT): heartbeats, commands, reports, list refreshes."""
        if self.health is None:
            self.start()
        self._ensure_registered()
        backoff, next_beat, next_poll, outage = Backoff(), 0.0, 0.0, False
        while not self.stopping.is_set():
            now = time.monotonic()
            try:
                if not self._busy.is_set():  # the worker reports its own results as it goes
                    self.flush_reports()
                if now >= next_beat:
                    self.heartbeat()
                    next_beat = now + self.heartbeat_interval
                if now >= next_poll and not self._busy.is_set():
                    self.poll_commands()
                    # Jitter: servers started together (a reboot wave) do not keep asking in step.
                    next_poll = time.monotonic() + self.config.command_poll_interval * random.uniform(0.9, 1.1)
                self._maybe_refresh_lists()
            except PanelError as exc:
                wait = self._on_panel_error(exc, backoff, outage)
                outage = True
                self.state.save()
                self.stopping.wait(wait)
                continue
            if outage:
                logger.info("the panel answers again; the current state was sent")
                outage = False
            backoff.reset()
            self.state.panel_event(ok=True)
            self.state.save()
            if self._wake.is_set():  # a command finished: report the new state now
                self._wake.clear()
                next_beat = 0.0
                continue
            self._wake.wait(max(0.05, min(next_beat, next_poll) - time.monotonic()))

    def _on_panel_error(self, exc: PanelError, backoff: Backoff, outage: bool) -> float:
        self.state.panel_event(ok=False, error=str(exc))
        if exc.status in (401, 403):
            logger.error(
                "the panel refuses this agent's credential (%s): it was revoked or rotated, or the server was "
                "deleted in the panel. Register again with `governance-agent register --force`.",
                exc,
            )
            return REFUSED_WAIT
        wait = exc.retry_after or backoff.next()
        log = logger.info if outage else logger.warning
        if exc.status == 400:
            log("the panel refused this agent's request (%s); trying again in %.0f s", exc, wait)
        else:
            log("panel: %s; trying again in %.0f s (the state is cached meanwhile)", exc, wait)
        return wait

    def _maybe_refresh_lists(self) -> None:
        interval = self.config.apt_update_interval
        if self.dry_run or not interval or not self.config.updates or self._busy.is_set():
            return
        if time.time() - self.state.data.get("lists_refreshed_at", 0) >= interval:
            self._busy.set()
            self._work.put(("refresh-lists", None))

    def stop(self) -> None:
        """Stop the loop; a command in progress gets STOP_GRACE_SECONDS to finish and report."""
        self.stopping.set()
        self._wake.set()
        self._work.put(None)
        if self._worker is not None:
            self._worker.join(timeout=STOP_GRACE_SECONDS)
        if self.health is not None:
            self.health.stop()
        self.state.save()
        self.panel.close()
