"""Policy rules: validation, evaluation against one instance's reported state, and release tracking.

Pure logic, no ORM. A policy is `(policy_type, rules)`; the state is what an agent reports
(`{"os_version", "apps": [{"name", "version", "running"}], "settings": {...}, "updates": [...]}`).
Evaluation returns the failed rules, each with a stable `rule_key` (one violation per policy,
instance and rule_key) and evidence a person can act on.

Rule formats (the canonical JSON stored on the policy; forms and the API both produce it):

- required_apps: {"apps": [{"name", "min_version": str|None, "running": bool}]}
- blocked_apps:  {"apps": [{"pattern" (name or glob), "min_version": str|None, "below_version": str|None}]}
- update_rules:  {"os_deadline_hours": int|None, "apps": [{"name", "deadline_hours": int}]}
- baseline:      {"os_version": str|None, "os_match": "exact"|"minimum", "settings": {key: value}}
"""

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from common.exceptions import ErrorCollector, join_path, summarize
from common.versions import is_valid as is_valid_version
from common.versions import older
from common.versions import parse as V
from fleet.commands import NAME_RE, SETTING_KEY_RE

from .choices import OsMatch, PolicyType, ReleaseOutcome

GLOB_RE = re.compile(r"^[a-z0-9.*?\[\]_+\-!]{1,100}$")
MAX_DEADLINE_HOURS = 24 * 365


class RuleError(ValueError):
    """Rules that cannot be understood. `errors`: every problem, keyed by its path inside the rules
    (`apps[1].min_version`, `foo`; "" for the rules as a whole)."""

    def __init__(self, message: str | None = None, *, errors: dict[str, list[str]] | None = None):
        self.errors = errors if errors is not None else {"": [message or "The rules are not valid."]}
        super().__init__(message or summarize(self.errors))


@dataclass(frozen=True)
class Failure:
    rule_key: str  # stable: one violation per (policy, instance, rule_key)
    rule: str  # what the rule asks, in words
    evidence: str  # what was found, in words a person can act on


# --- Validation -------------------------------------------------------------------------------

# The keys each policy type's rules (and each of their app entries) may have; any other is refused.
TOP_KEYS = {
    PolicyType.REQUIRED_APPS: ("apps",),
    PolicyType.BLOCKED_APPS: ("apps",),
    PolicyType.UPDATE_RULES: ("os_deadline_hours", "apps"),
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
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
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


def _update_rules(problems: _Problems, rules: dict) -> dict:
    os_hours = rules.get("os_deadline_hours")
    os_hours = None if os_hours in (None, "") else problems.hours(os_hours, "os_deadline_hours")
    clean, seen = [], set()
    for path, item in _apps(problems, PolicyType.UPDATE_RULES, rules):
        name = problems.name(item.get("name"), f"{path}.name", example="nginx")
        _unique(problems, seen, name, f"{path}.name")
        clean.append(
            {"name": name, "deadline_hours": problems.hours(item.get("deadline_hours"), f"{path}.deadline_hours")}
        )
    if os_hours is None and not clean and not problems:
        problems.add("", "Give a deadline for OS updates, for at least one app, or both.")
    return {"os_deadline_hours": os_hours, "apps": clean}


def _baseline(problems: _Problems, rules: dict) -> dict:
    os_version = problems.version(rules.get("os_version"), "os_version")
    os_match = rules.get("os_match") or OsMatch.MINIMUM
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


def severity_for(policy_type: str) -> str:
    from .choices import SEVERITY_BY_TYPE

    return SEVERITY_BY_TYPE[policy_type]


# --- Instance facts ---------------------------------------------------------------------------


class Facts:
    """One instance's state, indexed once so that 50 policies can be checked against it cheaply."""

    __slots__ = ("os_version", "apps", "settings", "updates", "_pending", "_globbed")

    def __init__(self, state: dict):
        self.os_version = state.get("os_version") or ""
        self.apps = {a["name"]: a for a in state.get("apps") or () if a.get("name")}
        self.settings = state.get("settings") or {}
        self.updates = state.get("updates") or ()
        self._pending = None
        self._globbed: dict = {}

    def apps_matching(self, pattern: str, names_cache: dict) -> list[dict]:
        """Installed apps whose name matches the glob, worked out once per instance and pattern however
        many policies block it. `names_cache` (the checker's) remembers fnmatch per app name."""
        found = self._globbed.get(pattern)
        if found is None:
            found = []
            for n, a in self.apps.items():
                hit = names_cache.get(n)
                if hit is None:
                    hit = names_cache[n] = fnmatchcase(n, pattern)
                if hit:
                    found.append(a)
            self._globbed[pattern] = found
        return found

    def installed(self, kind: str, name: str) -> str | None:
        if kind == "os":
            return self.os_version or None
        app = self.apps.get(name)
        return str(app.get("version", "")) if app else None

    def pending_updates(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """{(kind, name): [(version, released_at ISO)]} of offered releases newer than what runs.
        Worked out once per instance, however many update_rules policies ask."""
        if self._pending is None:
            self._pending = self._find_pending_updates()
        return self._pending

    def _find_pending_updates(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        result: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for u in self.updates:
            kind = u.get("kind", "app")
            name = "os" if kind == "os" else u.get("name", "")
            installed = self.installed(kind, name)
            if installed is None and kind != "os":
                continue  # an update for an app that is not installed concerns nobody
            if installed is None or older(installed, str(u.get("version", ""))):
                result.setdefault((kind, name), []).append((str(u["version"]), u.get("released_at") or ""))
        return result


def parse_time(value) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fmt_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _json(value) -> str:
    return json.dumps(value)


def _same_setting(actual, expected) -> bool:
    """true == "true", 1 == "1": agents report settings as they read them, often as text."""
    if actual == expected and type(actual) is type(expected):
        return True

    def norm(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v).strip().lower()

    return norm(actual) == norm(expected)


def _range_text(low: str | None, below: str | None) -> str:
    if low and below:
        return f"blocked from {low} below {below}"
    if below:
        return f"blocked below {below}"
    if low:
        return f"blocked from {low}"
    return "blocked"


# --- Checkers: compiled once per policy, run once per instance ---------------------------------


class Checker:
    """The rules of one policy, pre-parsed. `check(facts, now, pending_since)` → failed rules."""

    def __init__(self, policy_type: str, rules: dict):
        self.policy_type = policy_type
        self.rules = rules
        self.check = getattr(self, f"_check_{policy_type}")
        if policy_type == PolicyType.REQUIRED_APPS:
            self._items = [(a["name"], a.get("min_version"), a.get("running", False)) for a in rules["apps"]]
        elif policy_type == PolicyType.BLOCKED_APPS:
            self._items = []
            for a in rules["apps"]:
                pattern, low, below = a["pattern"], a.get("min_version"), a.get("below_version")
                rule = f"{pattern} must not be installed" + (
                    f" ({_range_text(low, below).replace('blocked ', '')})" if low or below else ""
                )
                # The last item caches glob results per app name: fleets share a small set of names.
                self._items.append(
                    (pattern, any(c in pattern for c in "*?["), low, below, rule, _range_text(low, below), {})
                )
        elif policy_type == PolicyType.BASELINE:
            self._settings = [(k, v, f"{k} = {_json(v)}", _json(v)) for k, v in (rules.get("settings") or {}).items()]
            self._os_version = rules.get("os_version")
            self._os_exact = rules.get("os_match") == OsMatch.EXACT
            self._os_rule = f"OS {self._os_version}" + ("" if self._os_exact else " or newer")
        elif policy_type == PolicyType.UPDATE_RULES:
            targets = []
            if rules.get("os_deadline_hours"):
                targets.append(("os", "os", rules["os_deadline_hours"]))
            targets += [("app", a["name"], a["deadline_hours"]) for a in rules.get("apps", [])]
            self._items = targets

    def _check_required_apps(self, facts: Facts, now, pending_since=None) -> list[Failure]:
        failures = []
        for name, min_version, running in self._items:
            app = facts.apps.get(name)
            key = f"app:{name}"
            if app is None:
                failures.append(Failure(key, _required_text(name, min_version, running), f"{name} missing"))
                continue
            version = str(app.get("version", ""))
            if min_version and older(version, min_version):
                failures.append(
                    Failure(
                        key,
                        _required_text(name, min_version, running),
                        f"{name} {version} installed, {min_version} or newer required",
                    )
                )
            elif running and not app.get("running", True):
                failures.append(
                    Failure(
                        key, _required_text(name, min_version, running), f"{name} {version} installed but not running"
                    )
                )
        return failures

    def _check_blocked_apps(self, facts: Facts, now, pending_since=None) -> list[Failure]:
        failures = []
        for pattern, is_glob, low, below, rule, range_text, matched in self._items:
            if is_glob:
                candidates = facts.apps_matching(pattern, matched)
            else:
                app = facts.apps.get(pattern)
                if app is None:
                    continue
                candidates = [app]
            found = []
            for app in candidates:
                version = str(app.get("version", ""))
                if low and older(version, low):
                    continue
                if below and not older(version, below):
                    continue
                found.append(f"{app['name']} {version}".strip())
            if found:
                failures.append(
                    Failure(f"blocked:{pattern}", rule, f"{', '.join(sorted(found))} installed, {range_text}")
                )
        return failures

    def _check_update_rules(self, facts: Facts, now, pending_since=None) -> list[Failure]:
        """`pending_since[target]`: when the oldest recorded pending release became available, as a
        datetime or a (datetime, version) pair; the evidence names the release that set the deadline."""
        failures = []
        pending = facts.pending_updates() if self._items else {}
        for kind, name, hours in self._items:
            offered = pending.get((kind, name))
            if not offered:
                continue  # nothing newer is offered: up to date
            starts = [(t, v) for t, v in ((parse_time(r), v) for v, r in offered) if t is not None]
            tracked = (pending_since or {}).get(target_key(kind, name))
            if isinstance(tracked, datetime):
                tracked = (tracked, None)
            if tracked is not None:
                starts.append(tracked)
            if not starts:
                continue
            start, start_version = min(starts, key=lambda s: s[0])
            age_hours = (now - start).total_seconds() / 3600
            if age_hours <= hours:
                continue
            newest = max((v for v, _ in offered), key=V)
            label = "OS" if kind == "os" else name
            rule = f"{label} updates within {hours} h of release"
            since = f"{label} {start_version or newest} available since {_fmt_time(start)}"
            if start_version and start_version != newest:
                since += f" (superseded by {newest})"
            failures.append(
                Failure(f"update:{target_key(kind, name)}", rule, f"{since}, {int(age_hours)} h > {hours} h")
            )
        return failures

    def _check_baseline(self, facts: Facts, now, pending_since=None) -> list[Failure]:
        failures = []
        expected = self._os_version
        if expected:
            exact, rule = self._os_exact, self._os_rule
            actual = facts.os_version
            if not actual:
                failures.append(Failure("os_version", rule, "OS version not reported"))
            elif exact and V(actual) != V(expected):
                failures.append(Failure("os_version", rule, f"OS {actual} installed, exactly {expected} required"))
            elif not exact and older(actual, expected):
                failures.append(Failure("os_version", rule, f"OS {actual} installed, {expected} or newer required"))
        for key, want, rule, want_text in self._settings:
            if key not in facts.settings:
                failures.append(Failure(f"setting:{key}", rule, f"{key} not set, expected {want_text}"))
            elif not _same_setting(facts.settings[key], want):
                failures.append(
                    Failure(f"setting:{key}", rule, f"{key} is {_json(facts.settings[key])}, expected {want_text}")
                )
        return failures


def _required_text(name, min_version, running) -> str:
    text = f"{name}" + (f" {min_version} or newer" if min_version else "") + " must be installed"
    return text + (" and running" if running else "")


def target_key(kind: str, name: str) -> str:
    return "os" if kind == "os" else f"app:{name}"


def evaluate(
    policy_type: str, rules: dict, state: dict, now: datetime, pending_since: dict | None = None
) -> list[Failure]:
    """The failed rules of one policy for one instance state. `pending_since` maps a target ("os",
    "app:nginx") to when its oldest still-pending release became available, as recorded over time,
    so that a newer release replacing an older one in the agent's report does not reset the clock."""
    return Checker(policy_type, rules).check(Facts(state), now, pending_since)


# --- Conflicts --------------------------------------------------------------------------------


def conflicting_apps(required: dict, blocked: dict) -> list[tuple[str, str]]:
    """[(app, pattern)] where every version the required rule accepts is blocked by the blocked rule."""
    result = []
    for req in required.get("apps", []):
        for blk in blocked.get("apps", []):
            if not fnmatchcase(req["name"], blk["pattern"]):
                continue
            if blk.get("below_version"):
                continue  # a newer version satisfies both
            low = blk.get("min_version")
            if low is None or (req.get("min_version") and not V(req["min_version"]) < V(low)):
                result.append((req["name"], blk["pattern"]))
    return result


# --- Release tracking -------------------------------------------------------------------------


def release_transitions(state: dict, open_records: list[dict]) -> tuple[list[dict], dict[int, str]]:
    """Compare what is offered now with the releases recorded as pending.

    Returns (new releases to record as pending, {record id: outcome} to close). A recorded release
    is applied once the instance runs it or something newer; it stays pending while it, or a newer
    release of the same thing, is still offered (so a newer release does not reset the clock); it is
    withdrawn when nothing newer is offered any more without the instance running it.
    """
    facts = Facts(state)
    pending = facts.pending_updates()
    recorded = {(r["kind"], r["name"], r["version"]) for r in open_records}
    new = [
        {"kind": kind, "name": name, "version": version, "released_at": released}
        for (kind, name), offered in pending.items()
        for version, released in offered
        if (kind, name, version) not in recorded
    ]
    close = {}
    for r in open_records:
        installed = facts.installed(r["kind"], r["name"])
        if installed is not None and not V(installed) < V(r["version"]):
            close[r["id"]] = ReleaseOutcome.APPLIED
        elif (r["kind"], r["name"]) not in pending:
            close[r["id"]] = ReleaseOutcome.WITHDRAWN
    return new, close


def rule_keys(policy_type: str, rules: dict) -> list[tuple[str, str]]:
    """[(rule_key, label)] of every rule a policy has: what an exception for one rule can name."""
    if policy_type == PolicyType.REQUIRED_APPS:
        return [
            (f"app:{a['name']}", _required_text(a["name"], a.get("min_version"), a.get("running")))
            for a in rules["apps"]
        ]
    if policy_type == PolicyType.BLOCKED_APPS:
        return [(f"blocked:{a['pattern']}", f"{a['pattern']} must not be installed") for a in rules["apps"]]
    if policy_type == PolicyType.UPDATE_RULES:
        keys = (
            [("update:os", f"OS updates within {rules['os_deadline_hours']} h")]
            if rules.get("os_deadline_hours")
            else []
        )
        return keys + [
            (f"update:app:{a['name']}", f"{a['name']} updates within {a['deadline_hours']} h") for a in rules["apps"]
        ]
    keys = [("os_version", f"OS {rules['os_version']}")] if rules.get("os_version") else []
    return keys + [(f"setting:{k}", f"{k} = {_json(v)}") for k, v in (rules.get("settings") or {}).items()]
