"""Policy rules: parsed strictly into the canonical form each policy type stores (pure logic, no ORM).

Every problem is named by its path inside the rules (`apps[1].min_version`, `foo`), all at once;
a key the type does not know is refused, never dropped. See evaluators for the rule formats.
"""

import math
import re

from common.exceptions import ErrorCollector, join_path, summarize
from common.versions import is_valid as is_valid_version
from common.versions import parse as V
from fleet.commands import NAME_RE, SETTING_KEY_RE

from .choices import OsMatch, PolicyType

GLOB_RE = re.compile(r"^[a-z0-9.*?\[\]_+\-!]{1,100}\Z")
MAX_DEADLINE_HOURS = 24 * 365


class RuleError(ValueError):
    """Rules that cannot be understood. `errors`: every problem, keyed by its path inside the rules
    (`apps[1].min_version`, `foo`; "" for the rules as a whole)."""

    def __init__(self, message: str | None = None, *, errors: dict[str, list[str]] | None = None):
        self.errors = errors if errors is not None else {"": [message or "The rules are not valid."]}
        super().__init__(message or summarize(self.errors))


# --- Validation -------------------------------------------------------------------------------

# The keys each policy type's rules (and each of their app entries) may have; any other is refused.
TOP_KEYS = {
    PolicyType.REQUIRED_APPS: ("apps",),
    PolicyType.BLOCKED_APPS: ("apps",),
    PolicyType.UPDATE_RULES: ("os_deadline_hours", "apps", "deadline_hours"),
    PolicyType.BASELINE: ("os_version", "os_match", "settings"),
}
APP_KEYS = {
    PolicyType.REQUIRED_APPS: ("name", "min_version", "running"),
    PolicyType.BLOCKED_APPS: ("pattern", "min_version", "below_version"),
    PolicyType.UPDATE_RULES: ("name", "deadline_hours"),
}


class _Problems(ErrorCollector):
    def unknown_keys(self, obj: dict, allowed, path: str = "") -> None:
        for key in obj:
            if key not in allowed:
                self.add(join_path(path, str(key)), f"Unknown key '{key}': use {', '.join(allowed)}.")

    def version(self, value, path: str) -> str | None:
        if value in (None, ""):
            return None
        if not is_valid_version(value):
            self.add(path, f"'{value}' is not a version: use digits and dots, like 1.24 or 2:1.8.0-1.")
            return None
        return value

    def hours(self, value, path: str) -> int | None:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdecimal())
        ):
            self.add(path, "The deadline must be a whole number of hours, e.g. 48.")
            return None
        hours = int(value)
        if not 1 <= hours <= MAX_DEADLINE_HOURS:
            self.add(path, f"The deadline must be between 1 and {MAX_DEADLINE_HOURS} hours.")
            return None
        return hours

    def name(self, value, path: str, pattern=NAME_RE, example="monitoring-agent") -> str | None:
        if not isinstance(value, str) or not pattern.match(value):
            self.add(path, f"'{value}' is not an app name such as {example} (lowercase, digits, . _ + -).")
            return None
        return value


def _apps(problems: _Problems, policy_type: str, rules: dict) -> list[tuple[str, dict]]:
    """[(path, entry)] of the app entries that are objects; problems with the list itself noted."""
    apps = rules.get("apps", [])
    if not isinstance(apps, list):
        problems.add("apps", "'apps' must be a list.")
        return []
    result = []
    for i, item in enumerate(apps):
        path = f"apps[{i}]"
        if not isinstance(item, dict):
            problems.add(path, "Each entry of 'apps' must be an object.")
            continue
        problems.unknown_keys(item, APP_KEYS[policy_type], path)
        result.append((path, item))
    return result


def _unique(problems: _Problems, seen: set, value, path: str) -> None:
    if value is None:
        return
    if value in seen:
        problems.add(path, f"{value} is listed twice.")
    seen.add(value)


def _required_apps(problems: _Problems, rules: dict) -> dict:
    clean, seen = [], set()
    for path, item in _apps(problems, PolicyType.REQUIRED_APPS, rules):
        name = problems.name(item.get("name"), f"{path}.name")
        _unique(problems, seen, name, f"{path}.name")
        running = item.get("running", False)
        if not isinstance(running, bool):
            problems.add(f"{path}.running", "'running' must be true or false.")
        min_version = problems.version(item.get("min_version"), f"{path}.min_version")
        clean.append({"name": name, "min_version": min_version, "running": running is True})
    if not clean and not problems:
        problems.add("apps", "List at least one required app.")
    return {"apps": clean}


def _blocked_apps(problems: _Problems, rules: dict) -> dict:
    clean, seen = [], set()
    for path, item in _apps(problems, PolicyType.BLOCKED_APPS, rules):
        pattern = item.get("pattern")
        if not isinstance(pattern, str) or not GLOB_RE.match(pattern):
            problems.add(
                f"{path}.pattern",
                f"'{pattern}' is not an app name or glob such as insecure-* (lowercase, digits, . _ + - * ? [ ]).",
            )
            pattern = None
        _unique(problems, seen, pattern, f"{path}.pattern")
        low = problems.version(item.get("min_version"), f"{path}.min_version")
        below = problems.version(item.get("below_version"), f"{path}.below_version")
        if low and below and not V(low) < V(below):
            problems.add(f"{path}.below_version", f"The range from {low} below {below} is empty.")
        clean.append({"pattern": pattern, "min_version": low, "below_version": below})
    if not clean and not problems:
        problems.add("apps", "List at least one blocked app.")
    return {"apps": clean}


ALL_APPS = "*"


def _update_rules(problems: _Problems, rules: dict) -> dict:
    """`apps` lists apps by name; an entry named "*" covers every installed app not named (newly
    installed ones too). Shorthand: `apps: "*"` with `deadline_hours` covers every app and the OS
    (the OS at `os_deadline_hours` when that is given too)."""
    rules = dict(rules)
    if "deadline_hours" in rules and rules.get("apps") != ALL_APPS:
        problems.add("deadline_hours", "'deadline_hours' goes with apps: \"*\" (every app and the OS).")
    if rules.get("apps") == ALL_APPS:
        hours = problems.hours(rules.get("deadline_hours"), "deadline_hours")
        rules["apps"] = [{"name": ALL_APPS, "deadline_hours": hours}]
        if rules.get("os_deadline_hours") in (None, ""):
            rules["os_deadline_hours"] = hours
    os_hours = rules.get("os_deadline_hours")
    os_hours = None if os_hours in (None, "") else problems.hours(os_hours, "os_deadline_hours")
    clean, seen = [], set()
    for path, item in _apps(problems, PolicyType.UPDATE_RULES, rules):
        name = item.get("name")
        if name != ALL_APPS:
            name = problems.name(name, f"{path}.name", example="nginx (or * for every app)")
        _unique(problems, seen, name, f"{path}.name")
        clean.append(
            {"name": name, "deadline_hours": problems.hours(item.get("deadline_hours"), f"{path}.deadline_hours")}
        )
    if os_hours is None and not clean and not problems:
        problems.add("", "Give a deadline for OS updates, for at least one app, or both.")
    return {"os_deadline_hours": os_hours, "apps": clean}


def _baseline(problems: _Problems, rules: dict) -> dict:
    os_version = problems.version(rules.get("os_version"), "os_version")
    # The spec's baseline is "a specific Cloud OS version": exact unless minimum is asked for.
    os_match = rules.get("os_match") or OsMatch.EXACT
    if os_match not in OsMatch.values:
        problems.add("os_match", "'os_match' must be 'exact' or 'minimum'.")
    settings = rules.get("settings") or {}
    if not isinstance(settings, dict):
        problems.add("settings", "'settings' must be an object of key → expected value.")
        settings = {}
    for key, value in settings.items():
        path = join_path("settings", str(key))
        if not SETTING_KEY_RE.match(key):
            problems.add(path, f"'{key}' is not a valid setting key (e.g. ssh.password_auth).")
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, float) and not math.isfinite(value)):
            problems.add(path, "The expected value must be a string, a finite number or a boolean.")
        elif isinstance(value, str) and ("\x00" in value or len(value) > 200):
            problems.add(path, "The expected value must be text of at most 200 characters, without NUL.")
    if os_version is None and not settings and not problems:
        problems.add("", "A baseline needs an OS version, at least one setting, or both.")
    return {"os_version": os_version, "os_match": os_match, "settings": dict(settings)}


_VALIDATORS = {
    PolicyType.REQUIRED_APPS: _required_apps,
    PolicyType.BLOCKED_APPS: _blocked_apps,
    PolicyType.UPDATE_RULES: _update_rules,
    PolicyType.BASELINE: _baseline,
}


def validate_rules(policy_type: str, rules) -> dict:
    """Return the canonical rules for `policy_type`, or raise RuleError naming every problem by its path.

    Strict: a key the type does not know is refused (a misspelt `min_versoin` must not silently drop
    the minimum), and every version must be one `common.versions` can order."""
    if policy_type not in PolicyType.values:
        raise RuleError(f"Unknown policy type '{policy_type}': use one of {', '.join(PolicyType.values)}.")
    if not isinstance(rules, dict):
        raise RuleError("Rules must be an object.")
    problems = _Problems()
    problems.unknown_keys(rules, TOP_KEYS[policy_type])
    clean = _VALIDATORS[policy_type](problems, rules)
    if problems:
        raise RuleError(errors=problems.errors)
    return clean
