"""The enabled policies and active waivers, compiled for in-memory checks (no ORM beyond loading)."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Max
from django.utils import timezone

from fleet.choices import ScopeKind
from fleet.scopes import Scope

from .. import evaluators
from ..choices import SEVERITY_BY_TYPE
from ..models import Policy, PolicyException


@dataclass
class ScopeMatcher:
    """Scope.matches, precomputed: it is called for every (instance, policy) pair of a sweep."""

    scope: Scope
    groups: frozenset = field(init=False)
    tags: frozenset = field(init=False)
    ids: frozenset = field(init=False)

    def __post_init__(self):
        self.groups = frozenset(self.scope.group_ids)
        self.tags = frozenset(self.scope.tags)
        self.ids = frozenset(self.scope.instance_ids)

    def matches(self, instance_id: int, group_ids, tags) -> bool:
        kind = self.scope.kind
        if kind == ScopeKind.ALL:
            return True
        if kind == ScopeKind.GROUPS:
            return not self.groups.isdisjoint(group_ids)
        if kind == ScopeKind.TAGS:
            return self.tags <= tags
        return instance_id in self.ids


@dataclass
class PolicySpec:
    id: int
    name: str
    policy_type: str
    severity: str
    matcher: ScopeMatcher
    checker: evaluators.Checker

    def __post_init__(self):
        self.key = str(self.id)  # the policy's key in InstanceCompliance.states
        self.by_instance = self.matcher.scope.kind == ScopeKind.INSTANCES


@dataclass
class ExceptionSpec:
    id: int
    policy_id: int
    rule_key: str  # "": the whole policy
    matcher: ScopeMatcher
    expires_at: datetime


def policies_version() -> tuple:
    """What identifies the current set of policies (one cheap query): any create, change or delete moves it."""
    agg = Policy.objects.aggregate(n=Count("pk"), updated=Max("updated"), top=Max("pk"))
    return agg["n"], agg["updated"], agg["top"]


def exceptions_version() -> tuple:
    """What identifies the current set of waivers: creating, revoking or deleting one moves it (waivers
    are never edited otherwise; expiry is a matter of the clock, applied in exception_specs)."""
    agg = PolicyException.objects.aggregate(n=Count("pk"), top=Max("pk"), revoked=Max("revoked_at"))
    return agg["n"], agg["top"], agg["revoked"]


# (version, compiled) pairs, each read and replaced as one value: a sweep's chunks run in threads
# (run._each_chunk), and a version checked must be the version of what is returned.
_cache: dict = {"policies": (None, None), "waivers": (None, None)}


def policy_specs(version: tuple | None = None) -> list[PolicySpec]:
    """Enabled policies, compiled. Cached per process until `policies_version()` moves."""
    version = policies_version() if version is None else version
    cached_version, cached = _cache["policies"]
    if cached_version == version and cached is not None:
        return cached
    specs = [
        PolicySpec(
            id=p.pk,
            name=p.name,
            policy_type=p.policy_type,
            severity=SEVERITY_BY_TYPE[p.policy_type].value,
            matcher=ScopeMatcher(p.scope),
            checker=evaluators.Checker(p.policy_type, p.rules),
        )
        for p in Policy.objects.filter(enabled=True).prefetch_related("scope_groups", "scope_instances")
    ]
    _cache["policies"] = (version, specs)
    return specs


def clear_cache() -> None:
    _cache.update(policies=(None, None), waivers=(None, None))


def exception_specs(now=None, version: tuple | None = None) -> dict[int, list[ExceptionSpec]]:
    """Active waivers by policy id. The unrevoked ones are cached per process until
    `exceptions_version()` moves; which of them are still active is decided by `now` on every call."""
    now = now or timezone.now()
    version = exceptions_version() if version is None else version
    cached_version, waivers = _cache["waivers"]
    if cached_version != version or waivers is None:
        unrevoked = PolicyException.objects.filter(revoked_at__isnull=True)
        waivers = [
            ExceptionSpec(e.pk, e.policy_id, e.rule_key, ScopeMatcher(e.scope), e.expires_at)
            for e in unrevoked.prefetch_related("scope_groups", "scope_instances")
        ]
        _cache["waivers"] = (version, waivers)
    result = defaultdict(list)
    for e in waivers:
        if e.expires_at > now:
            result[e.policy_id].append(e)
    return dict(result)
