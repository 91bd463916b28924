"""Keeps `run_all`'s children running: a child that exits is restarted with exponential backoff.

One thread (the caller's) starts, polls and stops the children, so no lock is needed; signal handlers
only set a flag. Each child runs in a session of its own so that Ctrl-C reaches the supervisor alone,
which then stops the children in reverse start order (the web server last).
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_SECONDS = 10
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# A child that ran this long before exiting was healthy: its next restart starts from FIRST_BACKOFF again.
HEALTHY_AFTER = 60.0
TAIL_LINES = 20


@dataclass
class Child:
    name: str
    cmd: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Supervisor:
    """Start children, restart those that exit, stop all on SIGINT/SIGTERM. `say(text, error=False)` reports."""

    def __init__(self, *, cwd: Path, env: dict, say: Callable[..., None], first_backoff: float = FIRST_BACKOFF):
        self.cwd, self.env, self.say, self.first_backoff = cwd, env, say, first_backoff
        self.children: dict[str, Child] = {}
        self.stopping = False

    def install_signal_handlers(self) -> None:
        def on_signal(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def start(self, name: str, cmd: list[str], log_path: Path) -> Child:
        child = self.children.setdefault(name, Child(name, cmd, log_path, backoff=self.first_backoff))
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        with open(child.log_path, "ab") as log:
            child.proc = subprocess.Popen(
                child.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child.started_at, child.restart_at = time.monotonic(), None

    def run(self, poll: float = 0.5) -> None:
        """Until a signal: restart exited children. Returns with every child still running."""
        while not self.stopping:
            now = time.monotonic()
            for child in self.children.values():
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restarts += 1
                        self._spawn(child)
                        self.say(f"{child.name} restarted (restart {child.restarts}, pid {child.proc.pid}).")
                elif child.proc.poll() is not None:
                    self._on_exit(child, now)
            time.sleep(poll)

    def _on_exit(self, child: Child, now: float) -> None:
        code = child.proc.returncode
        child.exits.append(code)
        if now - child.started_at >= HEALTHY_AFTER:
            child.backoff = self.first_backoff
        delay = child.backoff
        child.backoff = min(child.backoff * 2, MAX_BACKOFF)
        child.restart_at = now + delay
        self.say(
            f"{child.name} ({describe_exit(code)}) after {now - child.started_at:.0f} s; restarting in {delay:g} s. "
            f"Last lines of {child.log_path}:\n{tail(child.log_path)}",
            error=True,
        )

    def stop_all(self) -> None:
        """SIGTERM every child (in reverse start order), then SIGKILL what is left after the grace period."""
        running = [c.proc for c in reversed(self.children.values()) if c.proc and c.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def summary(self) -> str:
        return ", ".join(f"{c.name}: {c.restarts} restart(s)" for c in self.children.values())
