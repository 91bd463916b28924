"""Enforce mode's pure logic: which command fixes a violation, the maintenance window, the rate budget,
the backoff between attempts and the circuit breaker's verdict. No ORM; unit-tested with plain data.

A fix is one command (`kind`, `params`) the command queue validates like any other. Mapping of a
violation's rule_key (see governance.evaluators) to its fix:

- required_apps `app:<name>`: missing → install_app at the minimum version; older than the minimum →
  update_app to it; installed but stopped → start_app;
- blocked_apps `blocked:<pattern>`: uninstall_app of one matching installed app (the alphabetically first;
  the next attempt takes the next one while the violation stays open);
- update_rules `update:os` / `update:app:<name>`: update_os / update_app to the newest offered version;
- baseline `os_version`: update_os to the policy's version; `setting:<key>`: set_config of that key.

Each fix is worked out from the instance's reported state, so a rule the state already meets (the fix
ran, the heartbeat came, the evaluation has not yet resolved the violation) gets no second command.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from common.versions import older
from common.versions import parse as V
from fleet.choices import CommandType as T

from ..choices import PolicyType
from ..evaluators import _same_setting as same_setting


@dataclass(frozen=True)
class Fix:
    kind: str
    params: dict

    @property
    def key(self) -> tuple:
        """Identical fixes group together (one canary deployment per distinct fix)."""
        return self.kind, tuple(sorted((k, repr(v)) for k, v in self.params.items()))


def _app(state: dict, name: str) -> dict | None:
    return next((a for a in state.get("apps") or () if a.get("name") == name), None)


def _newest_offered(state: dict, kind: str, name: str) -> str | None:
    offered = [
        str(u["version"])
        for u in state.get("updates") or ()
        if u.get("version") and u.get("kind", "app") == kind and (kind == "os" or u.get("name") == name)
    ]
    return max(offered, key=V) if offered else None


def fix_for(policy_type: str, rules: dict, rule_key: str, state: dict) -> Fix | None:
    """The command that fixes the failed rule `rule_key` of a policy on an instance in `state`; None when
    there is nothing a command can do (the rule is gone, the state already complies, no update offered)."""
    if policy_type == PolicyType.REQUIRED_APPS and rule_key.startswith("app:"):
        name = rule_key.removeprefix("app:")
        rule = next((a for a in rules.get("apps", ()) if a.get("name") == name), None)
        if rule is None:
            return None
        app, minimum = _app(state, name), rule.get("min_version")
        if app is None:
            return Fix(T.INSTALL_APP, {"app": name, **({"version": minimum} if minimum else {})})
        if minimum and older(str(app.get("version", "")), minimum):
            return Fix(T.UPDATE_APP, {"app": name, "version": minimum})
        if rule.get("running") and not app.get("running", True):
            return Fix(T.START_APP, {"app": name})
        return None
    if policy_type == PolicyType.BLOCKED_APPS and rule_key.startswith("blocked:"):
        pattern = rule_key.removeprefix("blocked:")
        rule = next((a for a in rules.get("apps", ()) if a.get("pattern") == pattern), None)
        if rule is None:
            return None
        low, below = rule.get("min_version"), rule.get("below_version")
        for app in sorted(state.get("apps") or (), key=lambda a: a.get("name", "")):
            version = str(app.get("version", ""))
            if not fnmatchcase(app.get("name", ""), pattern):
                continue
            if (low and older(version, low)) or (below and not older(version, below)):
                continue
            return Fix(T.UNINSTALL_APP, {"app": app["name"]})
        return None
    if policy_type == PolicyType.UPDATE_RULES and rule_key.startswith("update:"):
        target = rule_key.removeprefix("update:")
        if target == "os":
            version = _newest_offered(state, "os", "os")
            return Fix(T.UPDATE_OS, {"version": version}) if version else None
        name = target.removeprefix("app:")
        version = _newest_offered(state, "app", name)
        return Fix(T.UPDATE_APP, {"app": name, "version": version}) if version and _app(state, name) else None
    if policy_type == PolicyType.BASELINE:
        wanted = rules.get("os_version")
        if rule_key == "os_version" and wanted and (state.get("os_version") or "") != wanted:
            return Fix(T.UPDATE_OS, {"version": wanted})
        if rule_key.startswith("setting:"):
            key = rule_key.removeprefix("setting:")
            expected, current = rules.get("settings") or {}, state.get("settings") or {}
            if key in expected and not (key in current and same_setting(current[key], expected[key])):
                return Fix(T.SET_CONFIG, {"values": {key: expected[key]}, "unset": []})
    return None


# --- Maintenance window ------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Days (0 = Monday … 6 = Sunday; empty = every day) and hours [start, end) in a time zone. No hours:
    the whole day. end < start crosses midnight, and belongs to the day it starts on."""

    days: tuple = ()
    start: time | None = None
    end: time | None = None
    timezone: str = "UTC"

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        if self.start is None or self.end is None or self.start == self.end:
            return not self.days or local.weekday() in self.days
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end and (not self.days or local.weekday() in self.days)
        if t >= self.start:  # the evening part: today's window
            return not self.days or local.weekday() in self.days
        if t < self.end:  # the morning part: the window that opened yesterday
            return not self.days or (local.weekday() - 1) % 7 in self.days
        return False

    def next_open(self, now: datetime) -> datetime | None:
        """When the window next opens (now if it is open), to the minute; None if it never does."""
        if self.is_open(now):
            return now
        local = now.astimezone(ZoneInfo(self.timezone)).replace(second=0, microsecond=0)
        if self.start is not None and self.end is not None and self.start != self.end:
            for day in range(8):
                candidate = datetime.combine(local.date() + timedelta(days=day), self.start, tzinfo=local.tzinfo)
                if candidate > now and self.is_open(candidate):
                    return candidate
            return None
        for day in range(1, 8):
            midnight = datetime.combine(local.date() + timedelta(days=day), time(0), tzinfo=local.tzinfo)
            if self.is_open(midnight):
                return midnight
        return None


# --- Rate budget, backoff, breaker -------------------------------------------------------------


def budget_left(
    *, scope_size: int, in_flight: int, started_last_hour: int, max_instances, max_percent, max_per_hour
) -> int:
    """How many more instances may start changing now: the tightest of the limits that are set
    (at most N at once, at most P % of the scope at once, at most M started per hour)."""
    limits = []
    if max_instances:
        limits.append(max_instances - in_flight)
    if max_percent:
        # At least one instance: 10 % of a 5-instance scope still lets remediation move.
        limits.append(max(1, scope_size * max_percent // 100) - in_flight)
    if max_per_hour:
        limits.append(max_per_hour - started_last_hour)
    return max(0, min(limits)) if limits else scope_size


def backoff_delay(attempt_number: int, base_seconds: int, cap_seconds: int = 24 * 3600) -> timedelta:
    """The wait after attempt `attempt_number` (1-based) failed before the next: base, 2×base, 4×base…"""
    return timedelta(seconds=min(cap_seconds, base_seconds * 2 ** max(0, attempt_number - 1)))


def breaker_trips(*, failed: int, finished: int, threshold_percent: int, min_finished: int) -> bool:
    """More than `threshold_percent` % of the attempts finished in the last hour failed, over enough of them
    that one unlucky instance does not stop the whole policy."""
    return finished >= max(1, min_finished) and failed * 100 > threshold_percent * finished
