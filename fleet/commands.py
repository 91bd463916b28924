"""Command types: parameter validation, before-state capture, inverses, and their effect on state.

Pure logic, no ORM. "State" is what an agent reports:
`{"os_version": "24.04", "apps": [{"name", "version", "running"}], "settings": {key: value}}`.
Each run records the relevant before-state so that exactly that one change can be undone.
"""

import json
import re

from common import versions

from .choices import CommandType as T
from .state import setting_value_problem

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._+\-]{0,99}\Z")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-~]{0,63}\Z")
SETTING_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
APP_TYPES = (T.INSTALL_APP, T.UNINSTALL_APP, T.UPDATE_APP, T.START_APP, T.STOP_APP, T.RESTART_APP)


class CommandParamsError(ValueError):
    """Parameters that do not fit the command type; the message says which and why, and `field` names
    the parameter (`app`, `version`, `values`, `unset`), `kind` for the type, None for the whole object."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def path(self, prefix: str = "") -> str:
        """Where the problem goes in the error envelope: `params.app`, `kind`, `params`, under `prefix`."""
        where = self.field if self.field == "kind" else f"params.{self.field}" if self.field else "params"
        return f"{prefix}{where}"


def _app_name(params) -> str:
    name = params.get("app")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CommandParamsError(
            "'app' must be an app name such as monitoring-agent (lowercase, digits, . _ + -).", "app"
        )
    return name


def _version(params, *, required: bool, what: str = "version") -> str | None:
    version = params.get("version")
    if version in (None, "") and not required:
        return None
    if not isinstance(version, str) or not VERSION_RE.match(version) or not versions.is_valid(version):
        raise CommandParamsError(f"'{what}' must be a version such as 1.4.2.", "version")
    return version


def validate_params(kind: str, params: dict) -> dict:
    """Return the normalised parameters for `kind`, or raise CommandParamsError."""
    if kind not in T.values:
        raise CommandParamsError(f"Unknown command type '{kind}'.", "kind")
    if not isinstance(params, dict):
        raise CommandParamsError("Parameters must be an object.")
    if kind in (T.INSTALL_APP,):
        clean = {"app": _app_name(params)}
        version = _version(params, required=False)
        if version:
            clean["version"] = version
        return clean
    if kind == T.UPDATE_APP:
        return {"app": _app_name(params), "version": _version(params, required=True)}
    if kind in APP_TYPES:
        return {"app": _app_name(params)}
    if kind == T.UPDATE_OS:
        return {"version": _version(params, required=True)}
    # set_config
    values = params.get("values", {})
    unset = params.get("unset", [])
    if not isinstance(values, dict) or not isinstance(unset, list):
        raise CommandParamsError("set_config takes 'values' (an object of key → value) and 'unset' (a list of keys).")
    if not values and not unset:
        raise CommandParamsError("set_config needs at least one key in 'values' or 'unset'.", "values")
    for key, value in values.items():
        if not SETTING_KEY_RE.match(key):
            raise CommandParamsError(f"'{key}' is not a valid setting key (e.g. ssh.password_auth).", "values")
        if not isinstance(value, (str, int, float, bool)):
            raise CommandParamsError(f"Setting '{key}' must be a string, number or boolean.", "values")
        if problem := setting_value_problem(value):  # what the agent reports back must pass its heartbeat
            raise CommandParamsError(f"Setting '{key}': {problem}", "values")
    for key in unset:
        if not isinstance(key, str) or not SETTING_KEY_RE.match(key):
            raise CommandParamsError(f"'{key}' is not a valid setting key.", "unset")
        if key in values:
            raise CommandParamsError(f"'{key}' cannot be both set and unset.", "unset")
    return {"values": dict(values), "unset": list(unset)}


def find_app(state: dict, name: str) -> dict | None:
    for app in state.get("apps") or []:
        if app.get("name") == name:
            return app
    return None


def capture_before_state(kind: str, params: dict, state: dict) -> dict:
    """What the instance looked like, as far as this command is concerned, before it ran."""
    if kind in APP_TYPES:
        app = find_app(state, params["app"])
        if app is None:
            return {"installed": False}
        return {"installed": True, "version": app.get("version"), "running": bool(app.get("running"))}
    if kind == T.UPDATE_OS:
        return {"os_version": state.get("os_version")}
    settings = state.get("settings") or {}
    keys = list(params["values"]) + list(params["unset"])
    return {
        "settings": {k: settings[k] for k in keys if k in settings},
        "absent": [k for k in keys if k not in settings],
    }


def inverse(kind: str, params: dict, before: dict) -> tuple[str, dict] | None:
    """The command that undoes `kind(params)` given the recorded before-state; None if nothing to undo."""
    if kind in APP_TYPES:
        app = params["app"]
        installed = before.get("installed", False)
        if kind == T.INSTALL_APP:
            if not installed:
                return T.UNINSTALL_APP, {"app": app}
            if before.get("version") and before.get("version") != params.get("version"):
                return T.UPDATE_APP, {"app": app, "version": before["version"]}
            return None
        if not installed:
            return None
        if kind == T.UNINSTALL_APP:
            return T.INSTALL_APP, {"app": app, "version": before["version"]}
        if kind == T.UPDATE_APP:
            if before.get("version") == params["version"]:
                return None
            return T.UPDATE_APP, {"app": app, "version": before["version"]}
        if kind in (T.START_APP, T.STOP_APP):
            return (T.START_APP if before.get("running") else T.STOP_APP), {"app": app}
        return None  # a restart leaves nothing to revert
    if kind == T.UPDATE_OS:
        old = before.get("os_version")
        if not old or old == params["version"]:
            return None
        return T.UPDATE_OS, {"version": old}
    values = dict(before.get("settings") or {})
    unset = list(before.get("absent") or [])
    if not values and not unset:
        return None
    return T.SET_CONFIG, {"values": values, "unset": unset}


def apply(kind: str, params: dict, state: dict) -> dict:
    """The state after the command succeeds (what a well-behaved agent does). Returns a new dict.

    Raises CommandParamsError when the command cannot apply (e.g. updating an app that is not installed).
    """
    new = {
        "os_version": state.get("os_version"),
        "apps": [dict(a) for a in state.get("apps") or []],
        "settings": dict(state.get("settings") or {}),
    }
    if kind == T.UPDATE_OS:
        new["os_version"] = params["version"]
        return new
    if kind == T.SET_CONFIG:
        new["settings"].update(params["values"])
        for key in params["unset"]:
            new["settings"].pop(key, None)
        return new
    app = find_app(new, params["app"])
    if kind == T.INSTALL_APP:
        if app is None:
            new["apps"].append({"name": params["app"], "version": params.get("version") or "1.0.0", "running": True})
        elif params.get("version"):
            app["version"] = params["version"]
        return new
    if app is None:
        raise CommandParamsError(f"{params['app']} is not installed")
    if kind == T.UNINSTALL_APP:
        new["apps"] = [a for a in new["apps"] if a["name"] != params["app"]]
    elif kind == T.UPDATE_APP:
        app["version"] = params["version"]
    elif kind in (T.START_APP, T.RESTART_APP):
        app["running"] = True
    elif kind == T.STOP_APP:
        app["running"] = False
    return new


def _setting_text(value) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def describe(kind: str, params: dict) -> str:
    """One line for lists: `update_app monitoring-agent → 1.3`."""
    if kind in APP_TYPES:
        version = params.get("version")
        return f"{kind} {params['app']}" + (f" → {version}" if version else "")
    if kind == T.UPDATE_OS:
        return f"update_os → {params['version']}"
    parts = [f"{k}={_setting_text(v)}" for k, v in params.get("values", {}).items()] + [
        f"-{k}" for k in params.get("unset", [])
    ]
    return "set_config " + ", ".join(parts)
