"""The enabled policies and active waivers, compiled for in-memory checks (no ORM beyond loading)."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Max, Q
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


def policies_version() -> tuple:
    """What identifies the current set of policies (one cheap query): any create, change or delete moves it."""
    agg = Policy.objects.aggregate(n=Count("pk"), updated=Max("updated"), top=Max("pk"))
    return agg["n"], agg["updated"], agg["top"]


_cache: dict = {"version": None, "specs": None}


def policy_specs(version: tuple | None = None) -> list[PolicySpec]:
    """Enabled policies, compiled. Cached per process until `policies_version()` moves."""
    version = policies_version() if version is None else version
    if _cache["version"] == version and _cache["specs"] is not None:
        return _cache["specs"]
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
    _cache.update(version=version, specs=specs)
    return specs


def clear_cache() -> None:
    _cache.update(version=None, specs=None)


def exception_specs(now=None) -> dict[int, list[ExceptionSpec]]:
    """Active waivers by policy id."""
    now = now or timezone.now()
    result = defaultdict(list)
    active = Q(revoked_at__isnull=True, expires_at__gt=now)
    for e in PolicyException.objects.filter(active).prefetch_related("scope_groups", "scope_instances"):
        result[e.policy_id].append(ExceptionSpec(e.pk, e.policy_id, e.rule_key, ScopeMatcher(e.scope)))
    return dict(result)
