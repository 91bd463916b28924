"""Policies: create, update, enable/disable, delete, preview, conflicts."""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.exceptions import ApplicationError, ConflictError, ErrorCollector, NotFoundError
from common.services import audit_log
from fleet.choices import InstanceStatus
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope
from fleet.services import scope_apply

from .. import evaluators
from ..choices import CURRENT_STATUSES, SEVERITY_BY_TYPE, PolicyMode, PolicyType, VersionSource, ViolationStatus
from ..evaluation.locks import lock_policies
from ..models import Policy, PolicyCompliance, ReleaseRecord, Violation
from .evaluation import enqueue_scope_evaluation, scope_instance_ids
from .versions import GitOrigin, version_record


def _is_stale(status: str, last_seen_at, now) -> bool:
    if status == InstanceStatus.ONLINE:
        return False
    stale_after = timedelta(seconds=getattr(settings, "GOVERNANCE_STALE_AFTER_SECONDS", 3600))
    return last_seen_at is None or now - last_seen_at > stale_after


def policy_get(pk: int) -> Policy:
    try:
        return Policy.objects.get(pk=pk)
    except Policy.DoesNotExist:
        raise NotFoundError("No such policy.") from None


def policy_check_writable(policy: Policy, git: GitOrigin | None = None) -> None:
    """A policy a GitOps repository owns changes only through that repository's commits (409 otherwise)."""
    if policy.git_repository_id is None:
        return
    if git is not None and git.repository.pk == policy.git_repository_id:
        return
    repository = policy.git_repository.name if policy.git_repository else "a GitOps repository"
    raise ConflictError(
        f"Policy '{policy.name}' is managed by GitOps repository '{repository}' ({policy.git_path}): "
        "change it there, the next sync applies it.",
        code="policy_managed_by_git",
    )


def _own(policy: Policy, git: GitOrigin | None) -> None:
    if git is not None:
        policy.git_repository, policy.git_path, policy.git_commit = git.repository, git.path, git.commit


def _clean_mode(mode) -> str:
    if mode not in PolicyMode.values:
        raise ApplicationError(f"'mode' must be {' or '.join(PolicyMode.values)}.", field="mode")
    return mode


def _clean_rules(policy_type: str, rules, problems: ErrorCollector | None = None) -> dict | None:
    """Canonical rules; each problem under `rules.<its path>`, raised at once unless `problems` collects."""
    collector = problems if problems is not None else ErrorCollector()
    try:
        return evaluators.validate_rules(policy_type, rules)
    except evaluators.RuleError as exc:
        collector.merge(exc.errors, prefix="rules")
        return None
    finally:
        if problems is None:
            collector.raise_if_any()


def _clean_name_and_rules(name: str, policy_type: str, rules, exclude_id=None) -> tuple[str, dict]:
    """Every problem of a policy's name and rules, in one error."""
    problems = ErrorCollector()
    try:
        name = _check_name(name, exclude_id=exclude_id)
    except ApplicationError as exc:
        problems.merge(exc.errors)
    clean = _clean_rules(policy_type, rules, problems)
    problems.raise_if_any()
    return name, clean


def _scopes_overlap(a: Scope, b: Scope) -> bool:
    decided = a.overlaps(b)
    if decided is not None:
        return decided
    return instances_in_scope(a).filter(pk__in=instances_in_scope(b).values("pk")).exists()


def policy_conflicts(*, policy_type: str, rules: dict, scope: Scope, exclude_id: int | None = None) -> list[str]:
    """Why this policy cannot coexist with the enabled ones: an app required by one and blocked by another."""
    if policy_type not in (PolicyType.REQUIRED_APPS, PolicyType.BLOCKED_APPS):
        return []
    other_type = PolicyType.BLOCKED_APPS if policy_type == PolicyType.REQUIRED_APPS else PolicyType.REQUIRED_APPS
    others = Policy.objects.filter(enabled=True, policy_type=other_type).exclude(pk=exclude_id)
    messages = []
    for other in others.prefetch_related("scope_groups", "scope_instances"):
        required, blocked = (rules, other.rules) if policy_type == PolicyType.REQUIRED_APPS else (other.rules, rules)
        pairs = evaluators.conflicting_apps(required, blocked)
        if not pairs or not _scopes_overlap(scope, other.scope):
            continue
        for app, pattern in pairs:
            if policy_type == PolicyType.REQUIRED_APPS:
                messages.append(
                    f"{app} would be required by this policy but is blocked by policy '{other.name}' "
                    f"(pattern {pattern}) over overlapping scopes."
                )
            else:
                messages.append(
                    f"{app} is required by policy '{other.name}' but would be blocked by this policy "
                    f"(pattern {pattern}) over overlapping scopes."
                )
    return messages


def _check_conflicts(*, name: str, policy_type: str, rules: dict, scope: Scope, exclude_id=None) -> None:
    messages = policy_conflicts(policy_type=policy_type, rules=rules, scope=scope, exclude_id=exclude_id)
    if messages:
        raise ApplicationError(
            f"Policy '{name}' conflicts with another policy: " + " ".join(messages),
            errors={"rules": messages},
            code="policy_conflict",
        )


def _check_name(name: str, exclude_id=None) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the policy a name.", field="name")
    if Policy.objects.filter(name__iexact=name).exclude(pk=exclude_id).exists():
        raise ApplicationError(f"A policy named '{name}' already exists.", field="name")
    return name


@transaction.atomic
def policy_create(
    *,
    actor,
    name: str,
    policy_type: str,
    rules: dict,
    scope: Scope,
    description: str = "",
    enabled: bool = True,
    mode: str = PolicyMode.AUDIT,
    source: str = VersionSource.SYSTEM,
    git: GitOrigin | None = None,
) -> Policy:
    """Create a policy (its version 1 is recorded); its scope is evaluated after commit."""
    name, clean = _clean_name_and_rules(name, policy_type, rules)
    mode = _clean_mode(mode)
    if enabled:
        _check_conflicts(name=name, policy_type=policy_type, rules=clean, scope=scope)
    policy = Policy(
        name=name,
        description=description,
        policy_type=policy_type,
        rules=clean,
        enabled=enabled,
        mode=mode,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    _own(policy, git)
    policy.save()
    scope_apply(policy, scope)
    policy.save()  # bump `updated` after the scope is stored: evaluation caches key on it
    PolicyCompliance.objects.create(policy=policy)
    audit_log(
        actor=actor,
        action="policy.create",
        obj=policy,
        details={"type": policy_type, "rules": clean, "enabled": enabled, "source": source},
    )
    version_record(policy=policy, change="created", actor=actor, source=source, git=git)
    enqueue_scope_evaluation(policy.pk, [])
    return policy


@transaction.atomic
def policy_update(
    *,
    actor,
    policy: Policy,
    name: str,
    rules: dict,
    scope: Scope,
    description: str = "",
    enabled: bool | None = None,
    mode: str | None = None,
    source: str = VersionSource.SYSTEM,
    git: GitOrigin | None = None,
) -> Policy:
    """Change a policy's name, rules, scope, mode (its type is fixed). Old and new scope are re-evaluated.
    Refused (409) for a policy a GitOps repository owns, unless `git` is that repository's sync."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    policy_check_writable(policy, git)
    name, clean = _clean_name_and_rules(name, policy.policy_type, rules, exclude_id=policy.pk)
    enabled = policy.enabled if enabled is None else enabled
    mode = policy.mode if mode is None else _clean_mode(mode)
    if enabled:
        _check_conflicts(name=name, policy_type=policy.policy_type, rules=clean, scope=scope, exclude_id=policy.pk)
    previous = scope_instance_ids(policy.scope)
    before = {"name": policy.name, "rules": policy.rules, "scope": policy.scope_label, "enabled": policy.enabled}
    policy.name, policy.description, policy.rules, policy.enabled = name, description, clean, enabled
    policy.mode = mode
    _own(policy, git)
    policy.save()
    scope_apply(policy, scope)
    policy.save()
    audit_log(
        actor=actor,
        action="policy.update",
        obj=policy,
        details={"before": before, "rules": clean, "enabled": enabled, "source": source},
    )
    version_record(policy=policy, change="changed", actor=actor, source=source, git=git)
    enqueue_scope_evaluation(policy.pk, previous)
    return policy


@transaction.atomic
def policy_set_enabled(
    *,
    actor,
    policy: Policy,
    enabled: bool,
    source: str = VersionSource.SYSTEM,
    git: GitOrigin | None = None,
    release: bool = False,
) -> Policy:
    """Enable or disable. `release` (a sync whose commit no longer has the policy): the panel owns it again."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    policy_check_writable(policy, git)
    if policy.enabled == enabled and not release:
        return policy
    if enabled:
        _check_conflicts(
            name=policy.name,
            policy_type=policy.policy_type,
            rules=policy.rules,
            scope=policy.scope,
            exclude_id=policy.pk,
        )
    changed = policy.enabled != enabled
    policy.enabled = enabled
    if release:
        policy.git_repository, policy.git_path = None, ""
        policy.git_commit = git.commit if git else policy.git_commit
    policy.save()
    audit_log(actor=actor, action="policy.enable" if enabled else "policy.disable", obj=policy)
    version_record(policy=policy, change="enabled" if enabled else "disabled", actor=actor, source=source, git=git)
    if changed:
        enqueue_scope_evaluation(policy.pk, [])
    return policy


def policy_enable(*, actor, policy: Policy, source: str = VersionSource.SYSTEM) -> Policy:
    return policy_set_enabled(actor=actor, policy=policy, enabled=True, source=source)


def policy_disable(*, actor, policy: Policy, source: str = VersionSource.SYSTEM) -> Policy:
    return policy_set_enabled(actor=actor, policy=policy, enabled=False, source=source)


@transaction.atomic
def policy_delete(*, actor, policy: Policy, source: str = VersionSource.SYSTEM) -> None:
    """Delete a policy. Its current violations are resolved (kept as history); its scope is re-scored.

    Waits for running evaluations first (evaluation.locks.lock_policies), so none of them is left
    holding rows of a policy that is gone."""
    lock_policies(exclusive=True)
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    policy_check_writable(policy)
    previous = scope_instance_ids(policy.scope)
    now = timezone.now()
    affected = set(
        Violation.objects.filter(policy=policy, status__in=CURRENT_STATUSES).values_list("instance_id", flat=True)
    )
    Violation.objects.filter(policy=policy, status__in=CURRENT_STATUSES).update(
        status=ViolationStatus.RESOLVED, resolved_at=now
    )
    audit_log(
        actor=actor, action="policy.delete", obj=policy, details={"type": policy.policy_type, "rules": policy.rules}
    )
    version_record(policy=policy, change="deleted", actor=actor, source=source)
    policy.delete()
    enqueue_scope_evaluation(None, None if previous is None else sorted(set(previous) | affected))


def policy_preview(
    *, policy_type: str, rules: dict, scope: Scope, exclude_id: int | None = None, now=None, limit: int = 50
) -> dict:
    """Which instances a policy would cover and which would violate it, without saving anything."""
    now = now or timezone.now()
    clean = _clean_rules(policy_type, rules)
    checker = evaluators.Checker(policy_type, clean)
    rows = list(
        instances_in_scope(scope)
        .order_by("name")
        .values_list("id", "name", "status", "last_seen_at", "os_version", "apps", "settings", "updates")
    )
    pending = defaultdict(dict)
    if policy_type == PolicyType.UPDATE_RULES:
        records = ReleaseRecord.objects.filter(closed_at__isnull=True, instance_id__in=[r[0] for r in rows])
        for iid, kind, name, released in records.values_list("instance_id", "kind", "name", "released_at"):
            key = evaluators.target_key(kind, name)
            if key not in pending[iid] or released < pending[iid][key]:
                pending[iid][key] = released
    violating, compliant, unknown = [], 0, 0
    for iid, name, status, last_seen_at, os_version, apps, settings_, updates in rows:
        if _is_stale(status, last_seen_at, now):
            unknown += 1
            continue
        facts = evaluators.Facts({"os_version": os_version, "apps": apps, "settings": settings_, "updates": updates})
        failures = checker.check(facts, now, pending.get(iid))
        if failures:
            violating.append({"id": iid, "name": name, "failures": [f.__dict__ for f in failures]})
        else:
            compliant += 1
    return {
        "in_scope": len(rows),
        "violating": len(violating),
        "compliant": compliant,
        "unknown": unknown,
        "severity": SEVERITY_BY_TYPE[policy_type],
        "instances": violating[:limit],
        "rules": clean,
        "conflicts": policy_conflicts(policy_type=policy_type, rules=clean, scope=scope, exclude_id=exclude_id),
    }
