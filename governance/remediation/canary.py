"""Remediation through a canary deployment: one deployment per distinct fix, scoped to the instances of
the violations it fixes; the canary's criteria decide, and its rollback reverts exactly that fix.

Imported lazily by services (canary depends on governance, not the other way at import time).
"""

from collections import defaultdict

from django.db import transaction

from common.exceptions import ApplicationError, ConflictError, UpgradeRequired
from fleet.choices import RunStatus, ScopeKind
from fleet.scopes import Scope

from ..models import RemediationAttempt
from .choices import AttemptOutcome

DEFAULT_CRITERIA = ["online", "health_check"]


def queue_through_canary(policy, rails, chosen, *, now) -> int:
    """Start one canary deployment per distinct fix among `chosen` [(violation, fix)]; returns attempts made."""
    from canary.choices import MissingAppPolicy, SelectionKind
    from canary.services import canary_create

    from .services import new_attempt, pause

    groups = defaultdict(list)
    for violation, fix in chosen:
        groups[fix.key].append((violation, fix))
    made = 0
    for items in groups.values():
        fix = items[0][1]
        ids = tuple(v.instance_id for v, _ in items)
        error, deployment = "", None
        try:
            deployment = canary_create(
                actor=None,
                kind=fix.kind,
                params=fix.params,
                scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=ids),
                selection=SelectionKind.PERCENTAGE,
                percentage=rails.canary_percentage,
                criteria=list(rails.canary_criteria or DEFAULT_CRITERIA),
                check_interval=rails.canary_check_interval,
                max_duration=rails.canary_max_duration,
                missing_app_policy=MissingAppPolicy.EXCLUDE,
                name=f"Remediation: {policy.name}"[:120],
            )
        except UpgradeRequired as exc:
            pause(policy=policy, reason=f"Remediation through a canary needs a license: {exc.message}", now=now)
            return made
        except ConflictError:
            continue  # another deployment changes the same thing there: try again next round
        except ApplicationError as exc:
            error = exc.message
        with transaction.atomic():
            RemediationAttempt.objects.bulk_create(
                [
                    new_attempt(
                        v,
                        policy,
                        fix,
                        now,
                        canary_deployment_id=deployment.pk if deployment else None,
                        outcome=AttemptOutcome.PENDING if deployment else AttemptOutcome.FAILED,
                        error=error,
                        finished_at=None if deployment else now,
                    )
                    for v, _ in items
                ]
            )
        made += len(items)
    return made


def settle_canary_attempts(pending, *, now) -> int:
    """Pending attempts of finished deployments: succeeded → each target's run decides; rolled back →
    rolled_back (the fix was reverted); failed → failed. Running deployments: link the runs that exist."""
    from canary.choices import TERMINAL_PHASES, Phase
    from canary.models import CanaryDeployment, CanaryTarget

    from .services import _settle

    attempts = list(pending)
    if not attempts:
        return 0
    deployments = {d.pk: d for d in CanaryDeployment.objects.filter(pk__in={a.canary_deployment_id for a in attempts})}
    targets = {
        (t.deployment_id, t.instance_id): t
        for t in CanaryTarget.objects.filter(deployment_id__in=list(deployments)).select_related("run")
    }
    settled = 0
    for attempt in attempts:
        deployment = deployments.get(attempt.canary_deployment_id)
        target = targets.get((attempt.canary_deployment_id, attempt.instance_id))
        run = target.run if target else None
        link = {"run": run, "command_id": run.command_id} if run else {}
        if deployment is None:
            settled += _settle(attempt, AttemptOutcome.FAILED, now, "The canary deployment no longer exists.")
        elif deployment.phase not in TERMINAL_PHASES:
            if run and attempt.run_id != run.pk:
                RemediationAttempt.objects.filter(pk=attempt.pk).update(**link)
        elif deployment.phase == Phase.ROLLED_BACK:
            reason = f"The canary deployment #{deployment.pk} rolled back: {deployment.failure_reason}"
            settled += _settle(attempt, AttemptOutcome.ROLLED_BACK, now, reason, **link)
        elif deployment.phase == Phase.FAILED:
            reason = f"The canary deployment #{deployment.pk} failed: {deployment.failure_reason}"
            settled += _settle(attempt, AttemptOutcome.FAILED, now, reason, **link)
        elif run is not None and run.status == RunStatus.COMPLETED:
            settled += _settle(attempt, AttemptOutcome.COMPLETED, run.finished_at or now, **link)
        else:
            why = (run.error if run else "") or (target.exclusion_reason if target else "") or "The change never ran."
            settled += _settle(attempt, AttemptOutcome.FAILED, now, why, **link)
    return settled
