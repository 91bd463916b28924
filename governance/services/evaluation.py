"""Evaluation entry points (heartbeat, policy change, beat sweep): a few lines each over evaluation.run."""

from django.db import transaction
from django.utils import timezone

from fleet.choices import ScopeKind
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope

from ..choices import CURRENT_STATUSES
from ..evaluation import pending, run, store
from ..evaluation.diff import decode_states
from ..models import InstanceCompliance, Policy, Violation


def evaluate_instances(*, instance_ids: list[int] | None = None, now=None) -> dict:
    """Evaluate instances (None: the whole fleet) against every enabled policy; see evaluation.run."""
    return run.evaluate(instance_ids, now=now)


def evaluate_instance(*, instance_id: int, now=None) -> dict:
    """Evaluate one instance now (evaluation.single's fast read); policy counts follow shortly.
    Heartbeats queue theirs instead (queue_instance_evaluation), to be evaluated in batches."""
    return run.evaluate([instance_id], now=now, recount_later=True)


def queue_instance_evaluation(*, instance_id: int) -> None:
    """After a heartbeat changed one instance's state (or its groups/tags): queue its evaluation, which
    a worker runs in a batch with the others queued meanwhile (evaluation.pending)."""
    pending.queue(instance_id)


def evaluate_pending() -> dict:
    """The worker's side of queue_instance_evaluation: claim queued instances and evaluate them."""
    return pending.drain()


def recount_after_instance_delete(*, instance_id: int) -> None:
    """An instance is being deleted (its lock held, its standing about to go): the policies it was
    counted in are marked due and recounted after the commit, without it."""
    standing = InstanceCompliance.objects.filter(instance_id=instance_id).values_list("states", flat=True).first()
    policy_ids = sorted(int(pid) for pid in decode_states(standing or ""))
    if policy_ids and store.mark_recount_due(policy_ids):
        from ..tasks import recount_policies_task

        transaction.on_commit(lambda: recount_policies_task.apply_async(countdown=run.RECOUNT_DELAY))


@transaction.atomic
def recount_due_policies(*, now=None) -> None:
    """Recount the policies heartbeat evaluations marked due (recount_policies_task)."""
    store.recount_policies([], now=now or timezone.now())


def evaluate_fleet(*, now=None) -> dict:
    return run.evaluate(None, now=now)


def evaluate_policy_scope(*, policy_id: int | None, previous_instance_ids: list[int] | None = None, now=None) -> dict:
    """Re-evaluate the instances a policy change concerns: its scope now, those it covered before, and
    those with its current violations."""
    ids = set(previous_instance_ids or ())
    policy = Policy.objects.filter(pk=policy_id).first() if policy_id else None
    if policy is not None:
        if policy.scope.kind == ScopeKind.ALL:
            return evaluate_fleet(now=now)
        ids |= set(instances_in_scope(policy.scope).values_list("pk", flat=True))
    if policy_id:
        current = Violation.objects.filter(policy_id=policy_id, status__in=CURRENT_STATUSES)
        ids |= set(current.values_list("instance_id", flat=True))
    return run.evaluate(sorted(ids), now=now)


def evaluate_time_based(*, now=None) -> dict:
    """Beat: expire waivers, then sweep the fleet (update deadlines passing, instances going stale)."""
    from .waivers import exceptions_expire

    now = now or timezone.now()
    exceptions_expire(now=now, evaluate=False)
    return evaluate_fleet(now=now)


def enqueue_scope_evaluation(policy_id: int | None, previous: list[int] | None) -> None:
    """After commit, re-evaluate a policy's scope plus `previous` instances; previous=None: the whole fleet."""
    from ..tasks import evaluate_fleet_task, evaluate_policy_scope_task

    if previous is None:
        transaction.on_commit(lambda: evaluate_fleet_task.delay())
    else:
        transaction.on_commit(lambda: evaluate_policy_scope_task.delay(policy_id, previous))


def scope_instance_ids(scope: Scope | None) -> list[int] | None:
    """The instances a scope covers now; None for the whole fleet (no list to carry around)."""
    if scope is None:
        return []
    if scope.kind == ScopeKind.ALL:
        return None
    return list(instances_in_scope(scope).values_list("pk", flat=True))
