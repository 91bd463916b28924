"""Policy rules: validation, evaluation against one instance's reported state, and release tracking.

Pure logic, no ORM. A policy is `(policy_type, rules)`; the state is what an agent reports
(`{"os_version", "apps": [{"name", "version", "running"}], "settings": {...}, "updates": [...]}`).
Evaluation returns the failed rules, each with a stable `rule_key` (one violation per policy,
instance and rule_key) and evidence a person can act on.

Rule formats (the canonical JSON stored on the policy; forms and the API both produce it):

- required_apps: {"apps": [{"name", "min_version": str|None, "running": bool}]}
- blocked_apps:  {"apps": [{"pattern" (name or glob), "min_version": str|None, "below_version": str|None}]}
- update_rules:  {"os_deadline_hours": int|None, "apps": [{"name" (or "*": every other app), "deadline_hours": int}]}
- baseline:      {"os_version": str|None, "os_match": "exact"|"minimum", "settings": {key: value}}
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from common.versions import older
from common.versions import parse as V

from .choices import OsMatch, PolicyType, ReleaseOutcome
from .rules import GLOB_RE, MAX_DEADLINE_HOURS, RuleError, validate_rules  # noqa: F401 - their home before


@dataclass(frozen=True)
class Failure:
    rule_key: str  # stable: one violation per (policy, instance, rule_key)
    rule: str  # what the rule asks, in words
    evidence: str  # what was found, in words a person can act on


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


def _blocked_text(pattern: str, low: str | None, below: str | None) -> str:
    """A blocked-apps rule in words, the same on its violations and on the policy's rules card."""
    span = _range_text(low, below).removeprefix("blocked").strip()
    return f"{pattern} must not be installed" + (f" {span}" if span else "")


# --- Checkers: compiled once per policy, run once per instance ---------------------------------


class Checker:
    """The rules of one policy, pre-parsed. `check(facts, now, pending_since)` → failed rules."""

    def __init__(self, policy_type: str, rules: dict):
        self.policy_type = policy_type
        self.rules = rules
        self.check = getattr(self, f"_check_{policy_type}")
        # The installed apps this policy looks at by name, and its glob patterns (fleet.app_index narrows
        # by them). Update rules look only at apps an update names.
        self.app_names, self.app_globs = frozenset(), ()
        if policy_type == PolicyType.REQUIRED_APPS:
            self._items = [(a["name"], a.get("min_version"), a.get("running", False)) for a in rules["apps"]]
            self.app_names = frozenset(a["name"] for a in rules["apps"])
        elif policy_type == PolicyType.BLOCKED_APPS:
            self._items = []
            for a in rules["apps"]:
                pattern, low, below = a["pattern"], a.get("min_version"), a.get("below_version")
                rule = _blocked_text(pattern, low, below)
                # The last item caches glob results per app name: fleets share a small set of names.
                self._items.append(
                    (pattern, any(c in pattern for c in "*?["), low, below, rule, _range_text(low, below), {})
                )
            self.app_names = frozenset(p for p, is_glob, *_ in self._items if not is_glob)
            self.app_globs = tuple(p for p, is_glob, *_ in self._items if is_glob)
        elif policy_type == PolicyType.BASELINE:
            self._settings = [(k, v, f"{k} = {_json(v)}", _json(v)) for k, v in (rules.get("settings") or {}).items()]
            self._os_version = rules.get("os_version")
            self._os_exact = rules.get("os_match") == OsMatch.EXACT
            self._os_rule = f"OS {self._os_version}" + ("" if self._os_exact else " or newer")
        elif policy_type == PolicyType.UPDATE_RULES:
            targets = []
            if rules.get("os_deadline_hours"):
                targets.append(("os", "os", rules["os_deadline_hours"]))
            targets += [("app", a["name"], a["deadline_hours"]) for a in rules.get("apps", []) if a["name"] != "*"]
            self._items = targets
            # "*": every installed app the rules do not name, whenever it was installed.
            self._every_app = next((a["deadline_hours"] for a in rules.get("apps", []) if a["name"] == "*"), None)
            self._named = {name for kind, name, _ in targets if kind == "app"}

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
        pending = facts.pending_updates() if self._items or self._every_app else {}
        items = self._items
        if self._every_app:
            extra = [("app", n, self._every_app) for k, n in pending if k == "app" and n not in self._named]
            items = items + sorted(extra)
        for kind, name, hours in items:
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
        return [
            (f"blocked:{a['pattern']}", _blocked_text(a["pattern"], a.get("min_version"), a.get("below_version")))
            for a in rules["apps"]
        ]
    if policy_type == PolicyType.UPDATE_RULES:
        keys = (
            [("update:os", f"OS updates within {rules['os_deadline_hours']} h")]
            if rules.get("os_deadline_hours")
            else []
        )
        return keys + [
            (f"update:app:{a['name']}", f"{a['name']} updates within {a['deadline_hours']} h")
            if a["name"] != "*"
            else ("update:app:<name>", f"every other app updates within {a['deadline_hours']} h")
            for a in rules["apps"]
        ]
    keys = [("os_version", f"OS {rules['os_version']}")] if rules.get("os_version") else []
    return keys + [(f"setting:{k}", f"{k} = {_json(v)}") for k, v in (rules.get("settings") or {}).items()]
