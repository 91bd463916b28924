"""The state an agent reports in a heartbeat: checked and normalised before anything stores it. Pure
logic, no ORM.

Governance evaluates what is stored here for the whole fleet, so a value it cannot use (a timestamp in
year 1, a list where a name belongs) must never get in: `validate_heartbeat` refuses it at the edge, with
every problem at once keyed by the body's own paths (`apps[3].version`, `updates[0].released_at`,
`settings.ssh.port`). The rules match the models and the OpenAPI schema (fleet.agent.serializers).

It walks a heartbeat once, in plain Python: a real server reports 1,000–3,000 packages, and this runs on
every heartbeat whose body differs from the last one stored (the fast lane answers the others). Keys it
does not know are ignored, so a newer agent can report more than this panel stores.
"""

import math
import re
from datetime import UTC, datetime

from common import versions
from common.exceptions import join_path
from common.validators import MAX_UTC_OFFSET, MAX_YEAR, MIN_YEAR

MAX_APPS, MAX_SETTINGS, MAX_UPDATES = 10_000, 1_000, 10_000
MAX_NAME, MAX_OS_VERSION, MAX_AGENT_VERSION = 100, 64, 32
MAX_SETTING_KEY, MAX_SETTING_TEXT = 128, 4096
MAX_PROBLEMS = 100  # past this many, one more line says how many were not listed
NUMBER_RANGE = (-(2**63), 2**63 - 1)  # a setting's number: what a 64-bit consumer can hold
UPDATE_KINDS = ("os", "app")

# One pass per string: not empty, within the length, no control character, no NUL or lone surrogate
# (PostgreSQL and UTF-8 cannot store those). Names are shown on pages and matched by policies.
_TEXT = {n: re.compile(rf"[^\x00-\x1f\x7f\ud800-\udfff]{{1,{n}}}") for n in (MAX_NAME, MAX_SETTING_KEY)}
_ANY_TEXT = re.compile(rf"[^\x00\ud800-\udfff]{{0,{MAX_SETTING_TEXT}}}")  # setting values may hold tabs, newlines
_AGENT_VERSION = re.compile(rf"[^\x00-\x1f\x7f\ud800-\udfff]{{0,{MAX_AGENT_VERSION}}}")


class Problems:
    """Every problem of one heartbeat, by path; stops collecting (but keeps counting) past MAX_PROBLEMS."""

    def __init__(self):
        self.errors: dict[str, list[str]] = {}
        self.count = 0

    def add(self, path: str, message: str) -> None:
        self.count += 1
        if self.count <= MAX_PROBLEMS:
            self.errors.setdefault(path, []).append(message)

    def result(self) -> dict[str, list[str]]:
        if self.count > MAX_PROBLEMS:
            self.errors.setdefault("non_field_errors", []).append(
                f"{self.count - MAX_PROBLEMS} more problems are not listed."
            )
        return self.errors


def _name_problem(value, limit: int = MAX_NAME) -> str | None:
    if not isinstance(value, str):
        return "Must be a string."
    if not _TEXT[limit].fullmatch(value):
        if not value:
            return "Must not be empty."
        if len(value) > limit:
            return f"At most {limit} characters (this has {len(value)})."
        return "Must not contain control characters, NUL or invalid Unicode."
    return None


def _version_problem(value, *, required: bool = True) -> str | None:
    if value is None or value == "":
        return "Each one needs a version." if required else None
    if not isinstance(value, str):
        return "Must be a string."
    if not versions.is_valid(value):
        return (
            f"'{value[:80]}' is not a version: start with a digit, like 1.24 or 2:1.8.0-1 "
            f"(at most {versions.MAX_VERSION_LENGTH} characters)."
        )
    return None


def parse_released_at(value) -> tuple[str | None, str | None]:
    """(the time as a UTC ISO 8601 string, None) or (None, why not). A time without an offset is UTC."""
    if not isinstance(value, str):
        return None, "Must be an ISO 8601 date-time string, like 2026-11-01T08:00:00+00:00."
    try:
        written = datetime.fromisoformat(value)
    except ValueError:
        return None, f"'{value[:80]}' is not an ISO 8601 date-time, like 2026-11-01T08:00:00+00:00."
    offset = written.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        return None, "The UTC offset must be between -14:00 and +14:00."
    naive = written.replace(tzinfo=None)
    try:
        utc = naive - offset if offset else naive
    except OverflowError:
        utc = None
    if utc is None or not (MIN_YEAR <= naive.year <= MAX_YEAR and MIN_YEAR <= utc.year <= MAX_YEAR):
        return None, f"The year must be between {MIN_YEAR} and {MAX_YEAR}."
    return utc.replace(tzinfo=UTC).isoformat(), None


def setting_value_problem(value) -> str | None:
    """Why `value` cannot be a setting's value (text, a finite number, true/false), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "Must be a finite number."
        return None if NUMBER_RANGE[0] <= value <= NUMBER_RANGE[1] else "A number must be within ±2⁶³."
    if isinstance(value, str):
        if _ANY_TEXT.fullmatch(value):
            return None
        if len(value) > MAX_SETTING_TEXT:
            return f"At most {MAX_SETTING_TEXT} characters (this has {len(value)})."
        return "Must not contain NUL or invalid Unicode."
    return "Must be a string, a number or true/false."


def _list(data: dict, key: str, limit: int, problems: Problems) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(key, "Must be a list.")
        return []
    if len(value) > limit:
        problems.add(key, f"At most {limit:,} items (this has {len(value):,}).")
        return []
    return value


def _apps(data: dict, problems: Problems) -> list[dict]:
    clean, seen = [], {}  # name → index of its first report
    name_ok, version_ok = _TEXT[MAX_NAME].fullmatch, versions.is_valid
    for index, app in enumerate(_list(data, "apps", MAX_APPS, problems)):
        # The common case in one expression; only an app that fails it is examined field by field.
        if type(app) is dict:
            name, version, running = app.get("name"), app.get("version"), app.get("running", True)
            if (
                type(name) is str
                and name_ok(name)
                and name not in seen
                and version_ok(version)
                and (running is True or running is False)
            ):
                seen[name] = index
                clean.append({"name": name, "version": version, "running": running})
                continue
        _app_problems(index, app, seen, problems)
    clean.sort(key=_by_name)
    return clean


def _by_name(app: dict) -> str:
    return app["name"]


def _app_problems(index: int, app, seen: dict[str, int], problems: Problems) -> None:
    path = f"apps[{index}]"
    if not isinstance(app, dict):
        problems.add(path, "Each app must be an object with a name and a version.")
        return
    name, version, running = app.get("name"), app.get("version"), app.get("running", True)
    if problem := _name_problem(name):
        problems.add(f"{path}.name", problem)
    elif name in seen:
        problems.add(f"{path}.name", f"'{name}' is reported twice (also apps[{seen[name]}]).")
    else:
        seen[name] = index
    if problem := _version_problem(version):
        problems.add(f"{path}.version", problem)
    if not isinstance(running, bool):
        problems.add(f"{path}.running", "Must be true or false.")


def _settings(data: dict, problems: Problems) -> dict:
    settings = data.get("settings")
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        problems.add("settings", "Must be an object of key → string, number or true/false.")
        return {}
    if len(settings) > MAX_SETTINGS:
        problems.add("settings", f"At most {MAX_SETTINGS:,} keys (this has {len(settings):,}).")
        return {}
    for key, value in settings.items():
        path = join_path("settings", key) if isinstance(key, str) and key else "settings"
        if problem := _name_problem(key, MAX_SETTING_KEY):
            problems.add(path, f"The key is not valid. {problem}")
        elif problem := setting_value_problem(value):
            problems.add(path, problem)
    return settings


def _updates(data: dict, problems: Problems) -> list[dict]:
    clean, seen = [], {}
    for index, update in enumerate(_list(data, "updates", MAX_UPDATES, problems)):
        path = f"updates[{index}]"
        if not isinstance(update, dict):
            problems.add(path, "Each update must be an object with kind, name, version and released_at.")
            continue
        kind, name, version = update.get("kind", "app"), update.get("name"), update.get("version")
        before = problems.count
        if kind not in UPDATE_KINDS:
            problems.add(f"{path}.kind", "Must be os or app.")
        if problem := _name_problem(name):
            problems.add(f"{path}.name", problem)
        if problem := _version_problem(version):
            problems.add(f"{path}.version", problem)
        released_at, problem = parse_released_at(update.get("released_at"))
        if problem:
            problems.add(f"{path}.released_at", problem)
        if problems.count > before:
            continue
        key = (kind, name, version)
        if key in seen:
            problems.add(path, f"{kind} {name} {version} is reported twice (also updates[{seen[key]}]).")
            continue
        seen[key] = index
        clean.append({"kind": kind, "name": name, "version": version, "released_at": released_at})
    clean.sort(key=lambda u: (u["kind"], u["name"], u["version"]))
    return clean


def validate_heartbeat(data) -> tuple[dict, dict[str, list[str]]]:
    """(the normalised state and agent version, {}) or ({}, every problem by path).

    Normalised: apps sorted by name as {name, version, running}; updates sorted as {kind, name, version,
    released_at in UTC}; absent lists and objects empty. Unknown keys are dropped.
    """
    problems = Problems()
    if not isinstance(data, dict):
        problems.add("non_field_errors", "Send the state as a JSON object.")
        return {}, problems.result()
    os_version = data.get("os_version", "")
    if os_version is None:
        os_version = ""
    if problem := _version_problem(os_version, required=False):
        problems.add("os_version", problem)
    agent_version = data.get("agent_version", "")
    if agent_version is None:
        agent_version = ""
    if not isinstance(agent_version, str) or not _AGENT_VERSION.fullmatch(agent_version):
        problems.add("agent_version", f"Must be text of at most {MAX_AGENT_VERSION} characters.")
    state = {
        "os_version": os_version,
        "apps": _apps(data, problems),
        "settings": _settings(data, problems),
        "updates": _updates(data, problems),
        "agent_version": agent_version,
    }
    if problems.count:
        return {}, problems.result()
    return state, {}
