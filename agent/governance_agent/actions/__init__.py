"""The panel's commands, carried out with the system's own tools.

    install_app / uninstall_app / update_app   apt-get (actions.apt)
    start_app / stop_app / restart_app          systemctl (actions.services)
    update_os                                   apt-get upgrade (actions.apt)
    set_config                                  one handler per key prefix (actions.settings)

Every command reports the tail of each tool's output and its exit status. In dry-run mode the
read-only queries still run (to resolve versions, to see what is installed) and every step that
would change the machine is only written into the plan; the run then fails with "dry run", so the
panel never records a change that did not happen.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from ..system import Result, atomic_write

DRY_RUN_REASON = "dry run: nothing on this machine was changed (the plan is in the output)"


class CommandFailed(Exception):
    """The command cannot be done or did not work; the message is the reason the panel shows."""


@dataclass
class Outcome:
    status: str  # completed | failed
    output: str = ""
    error: str = ""

    def as_report(self) -> dict:
        """What the panel takes (fleet/agent/serializers.py RunReportSerializer): at most 20,000 characters
        of output and 5,000 of error, and no NUL (refused there, which would lose the result: a
        maintainer script can print one)."""
        return {
            "status": self.status,
            "output": self.output.replace("\x00", "\ufffd")[-20000:],
            "error": self.error.replace("\x00", "\ufffd")[:5000],
        }


@dataclass
class Context:
    """What an action uses to touch the machine. `run` and `write` are the changes (only planned in
    dry-run); `query` is read-only and always runs."""

    host: object
    state: object
    dry_run: bool = False
    lines: list[str] = field(default_factory=list)
    deadline: float | None = None  # time.monotonic() by which the panel expects the result

    @property
    def config(self):
        return self.host.config

    def query(self, argv: list[str], **kwargs) -> Result:
        return self.host.run(argv, **kwargs)

    def run(self, argv: list[str], *, timeout: float = 600, env: dict | None = None, check: bool = True) -> Result:
        """Run a step that changes the machine; with `check`, a non-zero exit fails the command."""
        if self.dry_run:
            prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
            result = Result(tuple(argv), 0)
            self.lines.append("would run: " + (prefix + " " if prefix else "") + result.command_line)
            return result
        if self.deadline is not None:  # never run on past the panel's timeout for the command
            timeout = max(5.0, min(timeout, self.deadline - time.monotonic()))
        result = self.host.run(argv, timeout=timeout, env=env)
        self.lines.append(result.transcript())
        if check and not result.ok:
            raise CommandFailed(f"{argv[0]} {argv[1] if len(argv) > 1 else ''}".strip() + f" failed: {result.why()}")
        return result

    def write(self, path: str, text: str | None, *, mode: int = 0o644) -> None:
        """Replace a file's content (None: remove the file)."""
        if self.dry_run:
            what = "remove" if text is None else f"write ({len(text.splitlines())} lines)"
            self.lines.append(f"would {what} {path}" + ("" if text is None else ":\n" + _indent(text)))
            return
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            atomic_write(path, text, mode=mode)
        self.lines.append(f"{'removed' if text is None else 'wrote'} {path}")

    def note(self, line: str) -> None:
        self.lines.append(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


def handlers() -> dict:
    from . import apt, services, settings

    return {
        "install_app": apt.install_app,
        "uninstall_app": apt.uninstall_app,
        "update_app": apt.update_app,
        "update_os": apt.update_os,
        "start_app": services.start_app,
        "stop_app": services.stop_app,
        "restart_app": services.restart_app,
        "set_config": settings.set_config,
    }


def execute(
    host, state, kind: str, params: dict, *, dry_run: bool = False, timeout_seconds: float | None = None
) -> Outcome:
    """Carry out one command within `timeout_seconds` (the panel's); never raises for a failure of the
    command itself."""
    handler = handlers().get(kind)
    if handler is None:
        return Outcome("failed", "", f"This agent does not handle the command kind '{kind}'.")
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    ctx = Context(host, state, dry_run=dry_run, deadline=deadline)
    try:
        summary = handler(ctx, params if isinstance(params, dict) else {})
    except CommandFailed as exc:
        return Outcome("failed", ctx.output, str(exc))
    if dry_run:
        return Outcome("failed", ctx.output, DRY_RUN_REASON)
    return Outcome("completed", ctx.output + (f"\n{summary}" if summary else ""), "")
