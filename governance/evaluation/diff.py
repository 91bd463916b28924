"""One instance's evaluation, pure: specs + its state + its open violations and releases → the changes.

No ORM and no clock: everything comes in as plain data (see the dataclasses) and goes out as a
`Changes`, which `store` writes. A state that cannot be evaluated (a broken agent report stored
before validation existed, or anything a checker chokes on) gives `Changes` with `invalid` set: the
instance's violations are left as they are and its policies read "unknown".
"""

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from fleet.app_index import AppIndex
from fleet.choices import InstanceStatus

from .. import evaluators
from ..choices import PolicyState, Severity, ViolationStatus

if TYPE_CHECKING:
    from .specs import ExceptionSpec, PolicySpec

# What the database columns hold (see models); larger values make the state invalid, not the batch.
MAX_RULE, MAX_RELEASE_NAME, MAX_RELEASE_VERSION = 300, 100, 64
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class InstanceState:
    id: int
    name: str
    status: str
    last_seen_at: datetime | None
    os_version: object
    apps: object
    settings: object
    updates: object
    group_ids: frozenset = frozenset()
    tags: frozenset = frozenset()


@dataclass(frozen=True)
class OpenViolation:
    id: int
    policy_id: int
    rule_key: str
    status: str
    evidence: str
    exception_id: int | None
    severity: str


@dataclass(frozen=True)
class OpenRelease:
    id: int
    kind: str
    name: str
    version: str
    released_at: datetime


@dataclass(frozen=True)
class Standing:
    met: int = 0
    applicable: int = 0
    exempt: int = 0
    score: float | None = None
    stale: bool = False
    states: str = ""
    invalid_reason: str = ""


@dataclass(frozen=True)
class NewViolation:
    policy_id: int
    policy_name: str
    rule_key: str
    rule: str
    evidence: str
    severity: str
    status: str
    exception_id: int | None


@dataclass(frozen=True)
class ViolationChange:
    id: int
    old_status: str  # the store updates only a row still in this status
    rule: str
    evidence: str
    status: str
    exception_id: int | None


@dataclass(frozen=True)
class NewRelease:
    kind: str
    name: str
    version: str
    released_at: datetime


@dataclass
class Changes:
    instance_id: int
    standing: Standing
    old_standing: Standing | None
    create: list[NewViolation] = field(default_factory=list)
    update: list[ViolationChange] = field(default_factory=list)
    resolve: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)  # still failing as before
    new_releases: list[NewRelease] = field(default_factory=list)
    closed_releases: dict[int, str] = field(default_factory=dict)  # record id -> outcome
    opened_critical: list[tuple[str, str, str]] = field(default_factory=list)  # policy, instance, evidence

    @property
    def invalid(self) -> str:
        return self.standing.invalid_reason

    def touched_policies(self) -> set[int]:
        """Policies whose state on this instance changed: their counts must be recounted."""
        old = decode_states(self.old_standing.states) if self.old_standing else {}
        new = decode_states(self.standing.states)
        return {int(pid) for pid in old.keys() | new.keys() if old.get(pid) != new.get(pid)}


class StateInvalid(ValueError):
    """The instance's stored state cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class Context:
    """What every instance of one evaluation shares."""

    policies: "list[PolicySpec]"
    exceptions: "dict[int, list[ExceptionSpec]]"
    now: datetime
    stale_after: timedelta
    # Instances with the same groups and tags are in the same scopes: matched once per combination.
    _by_membership: dict = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def app_needs(self) -> tuple[frozenset, tuple]:
        """(app names, glob patterns) the enabled policies look at (see narrow_apps)."""
        names = frozenset().union(*(p.checker.app_names for p in self.policies))
        return names, tuple(sorted({g for p in self.policies for g in p.checker.app_globs}))

    def in_scope(self, state: InstanceState) -> "list[PolicySpec]":
        combo = (state.group_ids, state.tags)
        shared = self._by_membership.get(combo)
        if shared is None:
            shared = [p for p in self.policies if not p.by_instance and p.matcher.matches(0, *combo)]
            self._by_membership[combo] = shared
        return shared + [p for p in self.policies if p.by_instance and state.id in p.matcher.ids]


def is_stale(state: InstanceState, ctx: Context) -> bool:
    """Offline (or never seen) for longer than the threshold: the reported state can no longer be trusted."""
    if state.status == InstanceStatus.ONLINE:
        return False
    return state.last_seen_at is None or ctx.now - state.last_seen_at > ctx.stale_after


def diff(
    ctx: Context,
    state: InstanceState,
    releases: list[OpenRelease],
    violations: list[OpenViolation],
    standing: Standing | None,
) -> Changes:
    """The changes one instance's evaluation makes (never raises on a bad state: see module docstring)."""
    in_scope = ctx.in_scope(state)
    if is_stale(state, ctx):
        return _unknown(state, in_scope, violations, standing, stale=True)
    try:
        changes = _evaluate(ctx, state, in_scope, releases, violations, standing)
        _check_storable(changes)
    except Exception as exc:  # noqa: BLE001 - any failure is this instance's alone
        reason = str(exc) if isinstance(exc, StateInvalid) else f"{type(exc).__name__}: {exc}"
        reason = _printable(reason)[:500] or type(exc).__name__
        return _unknown(state, in_scope, violations, standing, stale=False, reason=reason)
    return changes


def _unknown(state, in_scope, violations, standing, *, stale: bool, reason: str = "") -> Changes:
    """Every policy in scope "unknown"; its violations are left as they are, those of policies no
    longer in scope (or no longer enabled) are resolved."""
    states = {p.key: PolicyState.UNKNOWN for p in in_scope}
    changes = Changes(state.id, _standing(states, stale=stale, reason=reason), standing)
    ids = {p.id for p in in_scope}
    for v in violations:
        (changes.unchanged if v.policy_id in ids else changes.resolve).append(v.id)
    return changes


def _evaluate(ctx, state, in_scope, releases, violations, standing) -> Changes:
    """1. release records; 2. each policy in scope (waivers applied); 3. diff against open violations."""
    apps = narrow_apps(ctx, state, releases) if isinstance(state.apps, AppIndex) else state.apps
    report = {"os_version": state.os_version, "apps": apps, "settings": state.settings, "updates": state.updates}
    _check_shape(report)
    facts = evaluators.Facts(report)
    changes = Changes(state.id, Standing(), standing)
    pending_since = _track_releases(ctx, report, releases, changes)
    desired, states = {}, {}  # (policy id, rule_key) -> (spec, Failure, exception id); policy key -> state
    for p in in_scope:
        failures = p.checker.check(facts, ctx.now, pending_since)
        waivers = ctx.exceptions.get(p.id)
        if not waivers:
            for f in failures:
                desired[(p.id, f.rule_key)] = (p, f, None)
            states[p.key] = PolicyState.NONCOMPLIANT if failures else PolicyState.COMPLIANT
            continue
        covering = [e for e in waivers if e.matcher.matches(state.id, state.group_ids, state.tags)]
        whole = next((e.id for e in covering if not e.rule_key), None)
        by_rule = {e.rule_key: e.id for e in covering if e.rule_key}
        unexempted = 0
        for f in failures:
            exc_id = whole or by_rule.get(f.rule_key)
            unexempted += exc_id is None
            desired[(p.id, f.rule_key)] = (p, f, exc_id)
        if whole is not None:
            states[p.key] = PolicyState.EXEMPT
        else:
            states[p.key] = PolicyState.NONCOMPLIANT if unexempted else PolicyState.COMPLIANT
    _diff_violations(state, desired, violations, changes)
    changes.standing = _standing(states, stale=False)
    return changes


def _diff_violations(state, desired: dict, violations: list[OpenViolation], changes: Changes) -> None:
    for v in violations:
        want = desired.pop((v.policy_id, v.rule_key), None)
        if want is None:
            changes.resolve.append(v.id)
            continue
        p, f, exc_id = want
        status = ViolationStatus.EXEMPTED if exc_id else ViolationStatus.OPEN
        if (v.evidence, v.status, v.exception_id) == (f.evidence, status, exc_id):
            changes.unchanged.append(v.id)
            continue
        changes.update.append(ViolationChange(v.id, v.status, f.rule[:MAX_RULE], f.evidence, status, exc_id))
        if status == ViolationStatus.OPEN and v.status != ViolationStatus.OPEN and v.severity == Severity.CRITICAL:
            changes.opened_critical.append((p.name, state.name, f.evidence))
    for (pid, rule_key), (p, f, exc_id) in desired.items():
        status = ViolationStatus.EXEMPTED if exc_id else ViolationStatus.OPEN
        changes.create.append(
            NewViolation(pid, p.name, rule_key, f.rule[:MAX_RULE], f.evidence, p.severity, status, exc_id)
        )
        if status == ViolationStatus.OPEN and p.severity == Severity.CRITICAL:
            changes.opened_critical.append((p.name, state.name, f.evidence))


def narrow_apps(ctx: Context, state: InstanceState, releases: list[OpenRelease]) -> list[dict]:
    """The installed apps this evaluation can look at, read from the instance's app index
    (fleet.app_index): those the policies name, a superset of those their globs match, and those an
    offered update or an open release record names (update rules, "*" included, and release tracking
    look at no others). Any superset gives the same outcome as all apps: every check finds apps by
    name. What it buys: see fleet.app_index. A glob without a literal part (`*`) reads every app."""
    names, globs = ctx.app_needs
    wanted = set(names)
    if isinstance(state.updates, list):
        wanted.update(u.get("name") for u in state.updates if isinstance(u, dict) and isinstance(u.get("name"), str))
    wanted.update(r.name for r in releases if r.kind == "app")
    return state.apps.select(wanted, globs)


def _track_releases(ctx, report: dict, releases: list[OpenRelease], changes: Changes) -> dict:
    """Record newly offered releases, close applied or withdrawn ones; → {target: (oldest pending
    release time, its version)} for the update deadlines."""
    if not releases and not report["updates"]:
        return {}
    records = [r.__dict__ for r in releases]
    created, closed = evaluators.release_transitions(report, records)
    changes.closed_releases = closed
    pending = [(r.kind, r.name, r.version, r.released_at) for r in releases if r.id not in closed]
    for item in created:
        released = evaluators.parse_time(item["released_at"]) or ctx.now
        if not EARLIEST <= released <= LATEST:
            raise StateInvalid(
                f"update {item['name']} {item['version']}: released_at {item['released_at']} is out of range"
            )
        changes.new_releases.append(NewRelease(item["kind"], item["name"], item["version"], released))
        pending.append((item["kind"], item["name"], item["version"], released))
    since = {}
    for kind, name, version, released in pending:
        target = evaluators.target_key(kind, name)
        if target not in since or released < since[target][0]:
            since[target] = (released, version)
    return since


def _check_shape(report: dict) -> None:
    """The few shape promises the checkers rely on; anything else they survive."""
    if not isinstance(report["os_version"], str | None):
        raise StateInvalid("os_version is not text")
    for what in ("apps", "updates"):
        items = report[what]
        if items is not None and not (isinstance(items, list) and all(isinstance(i, dict) for i in items)):
            raise StateInvalid(f"{what} is not a list of objects")
    for i, item in enumerate(report["apps"] or ()):
        if not isinstance(item.get("name", ""), str) or not isinstance(item.get("version", ""), (str, int, float)):
            raise StateInvalid(f"apps[{i}]: name or version is not text")
    for i, item in enumerate(report["updates"] or ()):
        if not all(isinstance(item.get(k, ""), str | None) for k in ("kind", "name", "version", "released_at")):
            raise StateInvalid(f"updates[{i}]: kind, name, version and released_at must be text")
    if report["settings"] is not None and not isinstance(report["settings"], dict):
        raise StateInvalid("settings is not an object")
    for key, value in (report["settings"] or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise StateInvalid(f"settings.{key}: {value} is not a finite number")
    texts = [report["os_version"] or "", *(report["settings"] or {})]
    texts += [v for v in (report["settings"] or {}).values() if isinstance(v, str)]
    texts += [
        v for item in (*(report["apps"] or ()), *(report["updates"] or ())) for v in item.values() if isinstance(v, str)
    ]
    # One pass over all of it at C speed (a server reports up to 10,000 packages).
    joined = "".join(texts)
    if "\x00" in joined or not (joined.isascii() or _encodable(joined)):
        raise StateInvalid("the reported state contains NUL or unpaired surrogate characters")


def _check_storable(changes: Changes) -> None:
    """What the database would refuse (NUL characters, over-long columns) refuses the state, not the batch."""
    texts = [t for v in changes.create for t in (v.rule_key, v.rule, v.evidence)]
    texts += [t for v in changes.update for t in (v.rule, v.evidence)]
    for r in changes.new_releases:
        if len(r.name) > MAX_RELEASE_NAME or len(r.version) > MAX_RELEASE_VERSION:
            raise StateInvalid(f"update {r.name[:40]!r}: name or version too long")
        texts += [r.name, r.version]
    for t in texts:
        if "\x00" in t or not _encodable(t):
            raise StateInvalid("the reported state contains NUL or unpaired surrogate characters")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    return text.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


def encode_states(states: dict[str, str]) -> str:
    """{policy key: PolicyState code} as compact text, "12c,13n,17u" (see InstanceCompliance.states)."""
    return ",".join(f"{pid}{code}" for pid, code in states.items())


def decode_states(text: str) -> dict[str, str]:
    return {item[:-1]: item[-1] for item in text.split(",") if item} if text else {}


def _standing(states: dict[str, str], *, stale: bool, reason: str = "") -> Standing:
    """met/applicable/exempt and the exact score (rounding is for display only)."""
    counts = Counter(states.values())
    met = counts[PolicyState.COMPLIANT]
    applicable = met + counts[PolicyState.NONCOMPLIANT]
    score = 100 * met / applicable if applicable else None
    encoded = encode_states(states)
    return Standing(met, applicable, counts[PolicyState.EXEMPT], score, stale, encoded, reason)
