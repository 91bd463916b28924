"""Enforce mode's writes: the beat's tick (reconcile attempts, trip the breaker, queue fixes within the
budget and window) and the admin's settings.

Serialisation: one worker at a time remediates a policy. `_claim` takes the policy's lease with a
conditional UPDATE on RemediationSettings.tick_claimed_until (Healthchecks' sendalerts pattern): the
worker whose UPDATE matched one row owns the tick until it releases it (or the lease runs out after a
crash). Budget counting, attempt rows and commands are written in one transaction under the lease, and
the unique (violation, number) constraint on RemediationAttempt is the backstop: a second insert of the
same attempt fails and rolls back its whole transaction, commands included. Outcome changes are
conditional UPDATEs from `pending`, so a run reported twice cannot count twice.
"""

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from common.choices import NotificationLevel
from common.services import audit_log, notify_admins
from fleet import commands as command_logic
from fleet.choices import CommandSource, RunStatus, ScopeKind
from fleet.models import CommandRun
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope
from fleet.services import CommandSpec, command_create_many

from ..choices import PolicyMode, ViolationStatus
from ..models import Policy, RemediationAttempt, RemediationSettings, Violation
from . import plan
from .choices import FAILED_OUTCOMES, FINISHED_OUTCOMES, AttemptOutcome

logger = logging.getLogger(__name__)
LEASE = timedelta(seconds=120)


def settings_for(policy: Policy) -> RemediationSettings:
    """The policy's rails, or the defaults (unsaved) when none were ever saved."""
    try:
        return policy.remediation
    except RemediationSettings.DoesNotExist:
        return RemediationSettings(policy=policy)


def window_of(rails: RemediationSettings) -> plan.Window:
    return plan.Window(
        days=tuple(rails.window_days or ()),
        start=rails.window_start,
        end=rails.window_end,
        timezone=rails.window_timezone or "UTC",
    )


# --- The tick ----------------------------------------------------------------------------------


def remediation_tick(*, now=None) -> dict:
    """Beat: remediate every enabled enforce-mode policy once. Returns {policy_id: summary}."""
    ids = Policy.objects.filter(mode=PolicyMode.ENFORCE, enabled=True).values_list("pk", flat=True)
    return {pk: remediate_policy(policy_id=pk, now=now) for pk in ids}


def remediate_policy(*, policy_id: int, now=None) -> dict:
    """One policy's remediation round. Steps:

    1. take the policy's lease (another worker has it: do nothing);
    2. settle attempts whose command run or canary finished, and mark fixed those whose violation resolved;
    3. trip the breaker if too many attempts failed in the last hour;
    4. unless paused or outside the window: queue fixes for due violations within the rate budget.
    """
    now = now or timezone.now()
    policy = Policy.objects.filter(pk=policy_id).first()
    if policy is None:
        return {"skipped": "no such policy"}
    RemediationSettings.objects.get_or_create(policy=policy)
    lease = _claim(policy_id)
    if lease is None:
        return {"skipped": "another worker holds the lease"}
    try:
        settled = reconcile(policy_id=policy_id, now=now)
        if policy.mode != PolicyMode.ENFORCE or not policy.enabled:
            return {"settled": settled, "skipped": "not enforcing"}
        rails = RemediationSettings.objects.get(pk=policy_id)
        if rails.paused_at is None and _maybe_trip(policy, rails, now):
            rails.refresh_from_db()
        if rails.paused_at is not None:
            return {"settled": settled, "skipped": "paused"}
        if not window_of(rails).is_open(now):
            return {"settled": settled, "skipped": "outside the maintenance window"}
        return {"settled": settled, "queued": _queue_due(policy, rails, now)}
    finally:  # only our own lease: one that ran out and was taken over stays with its new holder
        RemediationSettings.objects.filter(pk=policy_id, tick_claimed_until=lease).update(tick_claimed_until=None)


def _claim(policy_id: int, now=None):
    """The lease's expiry if this worker won it (a conditional UPDATE matched the row), else None."""
    clock = timezone.now()  # the lease runs on the real clock, whatever `now` the round is planned for
    until = clock + LEASE
    free = Q(tick_claimed_until__isnull=True) | Q(tick_claimed_until__lt=clock)
    won = RemediationSettings.objects.filter(free, pk=policy_id).update(tick_claimed_until=until)
    return until if won == 1 else None


def reconcile(*, policy_id: int, now=None) -> int:
    """Settle pending attempts from their runs / canaries; completed attempts of resolved violations are fixed."""
    now = now or timezone.now()
    settled = 0
    pending = RemediationAttempt.objects.filter(policy_id=policy_id, outcome=AttemptOutcome.PENDING)
    for attempt in pending.filter(canary_deployment_id__isnull=True).select_related("run"):
        run = attempt.run
        if run is None:
            settled += _settle(attempt, AttemptOutcome.FAILED, now, "The command run no longer exists.")
        elif run.status == RunStatus.COMPLETED:
            settled += _settle(attempt, AttemptOutcome.COMPLETED, run.finished_at or now)
        elif run.status == RunStatus.FAILED:
            settled += _settle(attempt, AttemptOutcome.FAILED, run.finished_at or now, run.error)
    from .canary import settle_canary_attempts

    settled += settle_canary_attempts(pending.filter(canary_deployment_id__isnull=False), now=now)
    RemediationAttempt.objects.filter(
        policy_id=policy_id, outcome=AttemptOutcome.COMPLETED, violation__status=ViolationStatus.RESOLVED
    ).update(outcome=AttemptOutcome.FIXED)
    return settled


def _settle(attempt, outcome: str, at, error: str = "", **fields) -> int:
    return RemediationAttempt.objects.filter(pk=attempt.pk, outcome=AttemptOutcome.PENDING).update(
        outcome=outcome, finished_at=at, error=(error or "")[:5000], **fields
    )


def _maybe_trip(policy: Policy, rails: RemediationSettings, now) -> bool:
    """The circuit breaker: pause (once, by a conditional UPDATE) and tell the admins why."""
    since = max(now - timedelta(hours=1), rails.resumed_at or now - timedelta(hours=1))
    recent = RemediationAttempt.objects.filter(policy=policy, finished_at__gt=since)
    counts = recent.aggregate(
        finished=Count("pk", filter=Q(outcome__in=FINISHED_OUTCOMES)),
        failed=Count("pk", filter=Q(outcome__in=FAILED_OUTCOMES)),
    )
    if not plan.breaker_trips(
        failed=counts["failed"],
        finished=counts["finished"],
        threshold_percent=rails.breaker_percent,
        min_finished=rails.breaker_min_attempts,
    ):
        return False
    reason = (
        f"{counts['failed']} of {counts['finished']} remediation attempts failed in the last hour "
        f"(more than {rails.breaker_percent} %)."
    )
    return pause(policy=policy, reason=reason, now=now)


def pause(*, policy: Policy, reason: str, now=None) -> bool:
    """Pause a policy's remediation (breaker or licence); notifies the admins once. False if already paused."""
    now = now or timezone.now()
    won = RemediationSettings.objects.filter(pk=policy.pk, paused_at__isnull=True).update(
        paused_at=now, pause_reason=reason[:300]
    )
    if won:
        audit_log(actor=None, action="remediation.pause", obj=policy, details={"reason": reason})
        notify_admins(
            title=f"Remediation of {policy.name} paused",
            body=f"{reason} Nothing more is queued for this policy until an admin resumes it.",
            url=policy.get_absolute_url(),
            level=NotificationLevel.WARNING,
        )
    return bool(won)


CHUNK = 500


def due_candidates(policy: Policy, rails: RemediationSettings, now):
    """Open violations that may get an attempt now, oldest first, each with its fix: no attempt in flight,
    fewer than K attempts, the backoff since the last one elapsed, and a command that can fix it.
    A generator over chunks, so a round that needs five fixes reads about five violations' worth."""
    violations = (
        Violation.objects.filter(policy=policy, status=ViolationStatus.OPEN)
        .select_related("instance")
        .annotate(
            tries=Count("remediation_attempts"),
            in_flight=Count("remediation_attempts", filter=Q(remediation_attempts__outcome=AttemptOutcome.PENDING)),
        )
        .filter(in_flight=0, tries__lt=rails.max_attempts)
        .order_by("first_detected_at", "pk")
    )
    offset = 0
    while chunk := list(violations[offset : offset + CHUNK]):
        offset += CHUNK
        last = {}
        tried = [v.pk for v in chunk if v.tries]
        for vid, number, finished in RemediationAttempt.objects.filter(violation_id__in=tried).values_list(
            "violation_id", "number", "finished_at"
        ):
            if vid not in last or number > last[vid][0]:
                last[vid] = (number, finished)
        for violation in chunk:
            number, finished = last.get(violation.pk, (0, None))
            if number and (finished is None or now < finished + plan.backoff_delay(number, rails.backoff_seconds)):
                continue
            fix = plan.fix_for(policy.policy_type, policy.rules, violation.rule_key, violation.instance.state)
            if fix is not None:
                yield violation, fix


def _budget(policy: Policy, rails: RemediationSettings, now) -> tuple[int, set[int]]:
    """(instances that may start now, instances with a fix already in flight)."""
    attempts = RemediationAttempt.objects.filter(policy=policy)
    busy = set(attempts.filter(outcome=AttemptOutcome.PENDING).values_list("instance_id", flat=True))
    started = attempts.filter(created__gte=now - timedelta(hours=1)).values("instance_id").distinct().count()
    left = plan.budget_left(
        scope_size=instances_in_scope(policy.scope).count(),
        in_flight=len(busy),
        started_last_hour=started,
        max_instances=rails.max_instances,
        max_percent=rails.max_percent,
        max_per_hour=rails.max_per_hour,
    )
    return left, busy


def select_within_budget(policy, rails, now) -> list[tuple[Violation, plan.Fix]]:
    """The due candidates that fit the budget: one fix per instance and round, new instances up to the limit."""
    left, busy = _budget(policy, rails, now)
    chosen, taken = [], set()
    if left <= 0:
        return chosen
    for violation, fix in due_candidates(policy, rails, now):
        iid = violation.instance_id
        if iid in busy or iid in taken:
            continue
        if len(taken) >= left:
            break
        taken.add(iid)
        chosen.append((violation, fix))
    return chosen


def _queue_due(policy: Policy, rails: RemediationSettings, now) -> int:
    chosen = select_within_budget(policy, rails, now)
    if not chosen:
        return 0
    if rails.use_canary:
        from .canary import queue_through_canary

        return queue_through_canary(policy, rails, chosen, now=now)
    chosen = _refuse_invalid(policy, chosen, now)
    try:
        return _queue_direct(policy, chosen, now) if chosen else 0
    except IntegrityError:
        logger.warning("remediation of policy %s: an attempt was recorded concurrently; nothing queued", policy.pk)
        return 0


def _refuse_invalid(policy: Policy, chosen, now) -> list:
    """A fix the command queue would refuse (e.g. an app name an agent reported that no command accepts)
    becomes a failed attempt with the reason, so it counts towards K and the breaker; the rest go on."""
    valid = []
    for violation, fix in chosen:
        try:
            command_logic.validate_params(fix.kind, fix.params)
        except command_logic.CommandParamsError as exc:
            new_attempt(
                violation,
                policy,
                fix,
                now,
                outcome=AttemptOutcome.FAILED,
                error=f"The command queue refused the fix: {exc}",
                finished_at=now,
            ).save()
        else:
            valid.append((violation, fix))
    return valid


@transaction.atomic
def _queue_direct(policy: Policy, chosen, now) -> int:
    """One command per violation on its instance, and its attempt row, in one transaction."""
    specs = [
        CommandSpec(
            kind=fix.kind,
            params=fix.params,
            scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=(v.instance_id,)),
            instances=(v.instance,),
            source=CommandSource.REMEDIATION,
            description=f"Remediation of {policy.name}: {v.rule}",
        )
        for v, fix in chosen
    ]
    commands = command_create_many(actor=None, specs=specs)
    runs = {r.command_id: r for r in CommandRun.objects.filter(command__in=commands)}
    RemediationAttempt.objects.bulk_create(
        [
            new_attempt(v, policy, fix, now, params=command.params, command=command, run=runs.get(command.pk))
            for (v, fix), command in zip(chosen, commands, strict=True)
        ]
    )
    return len(chosen)


def new_attempt(violation: Violation, policy: Policy, fix, now, **fields) -> RemediationAttempt:
    """The violation's next attempt at `fix` (unsaved); `fields` add its command, run, canary or outcome."""
    values = {"params": fix.params, **fields}
    return RemediationAttempt(
        violation=violation,
        policy=policy,
        instance_id=violation.instance_id,
        number=next_number(violation),
        kind=fix.kind,
        created=now,
        **values,
    )


def next_number(violation: Violation) -> int:
    """The number of the violation's next attempt (due_candidates annotated how many it had)."""
    tries = getattr(violation, "tries", None)
    return (violation.remediation_attempts.count() if tries is None else tries) + 1


# --- Preview -----------------------------------------------------------------------------------


def remediation_preview(*, policy_type: str, rules: dict, scope: Scope, policy: Policy | None = None, limit=50):
    """ "These N instances would get these commands": every fix the rules call for on the scope now,
    grouped by command (waived rules of a saved policy left out), and the budget the first round has."""
    from ..evaluators import Checker, Facts

    checker = Checker(policy_type, rules)
    exempted = set()
    if policy is not None:
        exempted = set(
            Violation.objects.filter(policy=policy, status=ViolationStatus.EXEMPTED).values_list(
                "instance_id", "rule_key"
            )
        )
    now = timezone.now()
    groups: dict[tuple, dict] = {}
    instances = set()
    for inst in (
        instances_in_scope(scope).order_by("name").only("pk", "name", "os_version", "apps", "settings", "updates")
    ):
        for failure in checker.check(Facts(inst.state), now, None):
            if (inst.pk, failure.rule_key) in exempted:
                continue
            fix = plan.fix_for(policy_type, rules, failure.rule_key, inst.state)
            if fix is None:
                continue
            entry = groups.setdefault(
                fix.key,
                {
                    "kind": fix.kind,
                    "params": fix.params,
                    "command": command_logic.describe(fix.kind, fix.params),
                    "instances": [],
                },
            )
            entry["instances"].append(inst.name)
            instances.add(inst.pk)
    commands = sorted(groups.values(), key=lambda g: (-len(g["instances"]), g["command"]))
    for entry in commands:
        entry["count"] = len(entry["instances"])
        entry["instances"] = entry["instances"][:limit]
    return {"instances": len(instances), "commands": commands}


def status_of(policy: Policy, now=None) -> dict:
    """What the policy page shows: paused by the breaker, budget used, the next window."""
    now = now or timezone.now()
    rails = settings_for(policy)
    window = window_of(rails)
    attempts = RemediationAttempt.objects.filter(policy=policy)
    in_flight = attempts.filter(outcome=AttemptOutcome.PENDING).values("instance_id").distinct().count()
    started = attempts.filter(created__gte=now - timedelta(hours=1)).values("instance_id").distinct().count()
    counts = attempts.aggregate(
        fixed=Count("pk", filter=Q(outcome=AttemptOutcome.FIXED)),
        failed=Count("pk", filter=Q(outcome__in=FAILED_OUTCOMES)),
    )
    return {
        "mode": policy.mode,
        "paused": rails.paused_at is not None,
        "paused_at": rails.paused_at,
        "pause_reason": rails.pause_reason,
        "in_flight": in_flight,
        "started_last_hour": started,
        "max_instances": rails.max_instances,
        "max_percent": rails.max_percent,
        "max_per_hour": rails.max_per_hour,
        "window_open": window.is_open(now),
        "next_window": window.next_open(now),
        "fixed": counts["fixed"],
        "failed": counts["failed"],
    }


def attempt_run_finished(*, run_id: int) -> int:
    """A command run finished (fleet's command_run_finished): settle the attempt it belongs to, if any."""
    attempt = (
        RemediationAttempt.objects.filter(run_id=run_id, outcome=AttemptOutcome.PENDING, canary_deployment_id=None)
        .select_related("run")
        .first()
    )
    if attempt is None or attempt.run.status not in (RunStatus.COMPLETED, RunStatus.FAILED):
        return 0
    outcome = AttemptOutcome.COMPLETED if attempt.run.status == RunStatus.COMPLETED else AttemptOutcome.FAILED
    return _settle(attempt, outcome, attempt.run.finished_at or timezone.now(), attempt.run.error)
