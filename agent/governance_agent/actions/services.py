"""start / stop / restart app through systemctl, on the unit of the app's name (or `report.units`).

Without systemd as the service manager (containers, CI) there is nothing to ask, and the command
fails saying so rather than pretending.
"""

from __future__ import annotations

from ..sources import systemd
from . import CommandFailed, Context
from .apt import _app


def _unit(ctx: Context, params: dict) -> str:
    app = _app(params)
    if not ctx.host.systemd_running:
        raise CommandFailed(
            f"systemd is not the service manager on this machine (PID 1 is {ctx.host.pid1()}): "
            f"cannot manage {systemd.unit_for(app, ctx.config.units)}."
        )
    return systemd.unit_for(app, ctx.config.units)


def systemctl_argv(verb: str, unit: str) -> list[str]:
    return ["systemctl", verb, "--", unit]


def _act(ctx: Context, params: dict, verb: str, want_running: bool) -> str:
    unit = _unit(ctx, params)
    ctx.run(systemctl_argv(verb, unit), timeout=300)
    if ctx.dry_run:
        return ""
    shown = ctx.query(["systemctl", "show", "-p", systemd.SHOW_PROPERTIES, "--", unit], timeout=30)
    blocks = systemd.parse_show(shown.stdout)
    running = bool(blocks) and systemd.is_running(blocks[0])
    if running != want_running:
        state = blocks[0].get("ActiveState", "unknown") if blocks else "unknown"
        raise CommandFailed(f"systemctl {verb} {unit} returned, but the unit is {state}.")
    return f"{unit} is {'running' if running else 'stopped'}."


def start_app(ctx: Context, params: dict) -> str:
    return _act(ctx, params, "start", True)


def stop_app(ctx: Context, params: dict) -> str:
    return _act(ctx, params, "stop", False)


def restart_app(ctx: Context, params: dict) -> str:
    return _act(ctx, params, "restart", True)
