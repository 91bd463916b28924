"""Waivers (policy exceptions): create, revoke, expire."""

from django.db import transaction
from django.utils import timezone

from common.exceptions import ApplicationError, ErrorCollector
from common.services import audit_log
from fleet.scopes import Scope
from fleet.services import scope_apply

from .. import evaluators
from ..models import Policy, PolicyException
from .evaluation import enqueue_scope_evaluation, evaluate_fleet, evaluate_instances, scope_instance_ids


@transaction.atomic
def exception_create(
    *, actor, policy: Policy, scope: Scope, justification: str, expires_at, rule_key: str = "", now=None
) -> PolicyException:
    """Exempt part of the fleet from a policy (or one of its rules) until `expires_at`. Audit-logged."""
    now = now or timezone.now()
    justification = (justification or "").strip()
    problems = ErrorCollector()
    if len(justification) < 10:
        problems.add("justification", "Explain why the exception is needed (at least 10 characters).")
    if expires_at is None:
        problems.add("expires_at", "An exception needs an expiry date.")
    elif expires_at <= now:
        problems.add("expires_at", "The expiry must be in the future.")
    if rule_key:
        known = dict(evaluators.rule_keys(policy.policy_type, policy.rules))
        if rule_key not in known:
            problems.add(
                "rule_key", f"Policy '{policy.name}' has no rule '{rule_key}'; its rules are: {', '.join(known)}."
            )
    problems.raise_if_any()
    exception = PolicyException.objects.create(
        policy=policy,
        rule_key=rule_key,
        justification=justification,
        expires_at=expires_at,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    scope_apply(exception, scope)
    audit_log(
        actor=actor,
        action="policy_exception.create",
        obj=exception,
        details={
            "policy": policy.name,
            "rule_key": rule_key,
            "scope": exception.scope_label,
            "expires_at": expires_at.isoformat(),
            "justification": justification,
        },
    )
    enqueue_scope_evaluation(None, scope_instance_ids(scope))
    return exception


@transaction.atomic
def exception_revoke(*, actor, exception: PolicyException) -> PolicyException:
    exception = PolicyException.objects.select_for_update().get(pk=exception.pk)
    if exception.revoked_at:
        raise ApplicationError("This exception is already revoked.")
    now = timezone.now()
    if exception.expires_at <= now:
        raise ApplicationError("This exception has already expired.")
    exception.revoked_at = now
    exception.revoked_by = actor if getattr(actor, "pk", None) else None
    exception.save(update_fields=["revoked_at", "revoked_by"])
    audit_log(actor=actor, action="policy_exception.revoke", obj=exception, details={"policy": exception.policy.name})
    enqueue_scope_evaluation(None, scope_instance_ids(exception.scope))
    return exception


@transaction.atomic
def exceptions_expire(*, now=None, evaluate: bool = True) -> list[int]:
    """Exceptions whose expiry passed: audit once and re-evaluate their scope (re-opening what they exempted).

    `evaluate=False` when the caller sweeps the whole fleet right after anyway.
    """
    now = now or timezone.now()
    due = list(
        PolicyException.objects.filter(revoked_at__isnull=True, expires_at__lte=now, expiry_processed_at__isnull=True)
        .select_related("policy")
        .prefetch_related("scope_groups", "scope_instances")
    )
    instance_ids: set[int] = set()
    whole_fleet = False
    for exception in due:
        won = PolicyException.objects.filter(pk=exception.pk, expiry_processed_at__isnull=True).update(
            expiry_processed_at=now
        )
        if not won:
            continue
        audit_log(
            actor=None, action="policy_exception.expire", obj=exception, details={"policy": exception.policy.name}
        )
        ids = scope_instance_ids(exception.scope)
        if ids is None:
            whole_fleet = True
        else:
            instance_ids |= set(ids)
    if not evaluate:
        pass
    elif whole_fleet:
        evaluate_fleet(now=now)
    elif instance_ids:
        evaluate_instances(instance_ids=sorted(instance_ids), now=now)
    return [e.pk for e in due]
