"""The command queue: commands queued on part of the fleet, delivered to agents, reported, reverted
and expired."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from common.exceptions import ApplicationError, ConflictError, NotFoundError
from common.services import audit_log_many
from fleet import commands as command_logic
from fleet.choices import CommandSource, RunStatus, ScopeKind
from fleet.models import Command, CommandRun, Instance
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope
from fleet.signals import command_run_finished


@dataclass(frozen=True)
class CommandSpec:
    """One command to queue: what, where (a scope, optionally narrowed to `instances`) and why."""

    kind: str
    params: dict
    scope: Scope
    instances: tuple | None = None
    source: str = CommandSource.MANUAL
    description: str = ""
    timeout_seconds: int | None = None
    inverse_of: Command | None = None


@transaction.atomic
def command_create(
    *,
    actor,
    kind: str,
    params: dict,
    scope: Scope,
    source: str = CommandSource.MANUAL,
    description: str = "",
    timeout_seconds: int | None = None,
    inverse_of: Command | None = None,
    instances=None,
) -> Command:
    """Queue a command: validate, resolve the scope, and create one pending run per instance.

    `instances` (optional) narrows the resolved scope further, e.g. to a canary subset.
    """
    spec = CommandSpec(
        kind=kind,
        params=params,
        scope=scope,
        instances=tuple(instances) if instances is not None else None,
        source=source,
        description=description,
        timeout_seconds=timeout_seconds,
        inverse_of=inverse_of,
    )
    return command_create_many(actor=actor, specs=[spec])[0]


@transaction.atomic
def command_create_many(*, actor, specs: list[CommandSpec]) -> list[Command]:
    """Queue several commands at once with a fixed number of INSERTs, whatever their count.

    All or nothing: one invalid spec (bad parameters, empty target) queues none of them.
    """
    prepared = []
    for spec in specs:
        try:
            clean = command_logic.validate_params(spec.kind, spec.params)
        except command_logic.CommandParamsError as exc:
            raise ApplicationError(str(exc), field=exc.path()) from exc
        targets = list(spec.instances) if spec.instances is not None else list(instances_in_scope(spec.scope))
        if not targets:
            raise ApplicationError("The target matches no instances: nothing would run.")
        prepared.append((spec, clean, targets))
    creator = actor if getattr(actor, "pk", None) else None
    commands = Command.objects.bulk_create(
        [
            Command(
                kind=spec.kind,
                params=clean,
                description=spec.description[:200],
                source=spec.source,
                timeout_seconds=spec.timeout_seconds or settings.COMMAND_DEFAULT_TIMEOUT,
                inverse_of=spec.inverse_of,
                created_by=creator,
                scope_kind=spec.scope.kind,
                scope_tags=list(spec.scope.tags),
            )
            for spec, clean, _targets in prepared
        ]
    )
    group_rows, instance_rows, runs = [], [], []
    pickup = timezone.now() + timedelta(seconds=settings.COMMAND_PICKUP_TIMEOUT)
    for command, (spec, clean, targets) in zip(commands, prepared, strict=True):
        group_rows += [Command.scope_groups.through(command_id=command.pk, group_id=g) for g in spec.scope.group_ids]
        instance_rows += [
            Command.scope_instances.through(command_id=command.pk, instance_id=i) for i in spec.scope.instance_ids
        ]
        runs += [
            CommandRun(
                command=command,
                instance=inst,
                pickup_deadline=pickup,
                before_state=command_logic.capture_before_state(spec.kind, clean, inst.state),
            )
            for inst in targets
        ]
    Command.scope_groups.through.objects.bulk_create(group_rows, batch_size=1000)
    Command.scope_instances.through.objects.bulk_create(instance_rows, batch_size=1000)
    CommandRun.objects.bulk_create(runs, batch_size=1000)
    audit_log_many(
        actor=actor,
        action="command.create",
        entries=[
            (command, {"kind": command.kind, "params": command.params, "runs": len(targets)})
            for command, (_spec, _clean, targets) in zip(commands, prepared, strict=True)
        ],
    )
    return commands


@transaction.atomic
def command_run_revert(
    *, actor, run: CommandRun, source: str = CommandSource.ROLLBACK, require_completed: bool = False
) -> Command | None:
    """Queue the inverse of one run on its instance: undo exactly that change, nothing else.

    Returns None when the run changed nothing that can be reverted (e.g. a restart).
    `require_completed` (a person's "Revert" in UI and API) refuses runs that have not completed.
    """
    if require_completed and run.status != RunStatus.COMPLETED:
        raise ConflictError(f"Only a completed run can be reverted; this one is {run.get_status_display().lower()}.")
    inv = run.inverse()
    if inv is None:
        return None
    kind, params = inv
    scope = Scope(kind=ScopeKind.INSTANCES, instance_ids=(run.instance_id,))
    return command_create(
        actor=actor,
        kind=kind,
        params=params,
        scope=scope,
        source=source,
        inverse_of=run.command,
        description=f"Revert of command #{run.command_id}",
        timeout_seconds=run.command.timeout_seconds,
        instances=[run.instance],
    )


def agent_commands_fetch(*, instance: Instance, limit: int = 20) -> list[CommandRun]:
    """Deliver the instance's runs: pending ones, and running ones its agent never acknowledged.

    Delivery is at least once. A reply to GET /commands can be lost on the way; the run would then sit
    "running" until its finish deadline although the agent never saw it. So a run the agent has said
    nothing about (no progress, no result) for COMMAND_REDELIVER_AFTER seconds is delivered again, until
    its pickup deadline; agents recognise a run id they already carried out and only re-send its result.
    Each delivery is claimed by a conditional UPDATE on (status, delivered_at), so two concurrent
    fetches never both deliver one run, and a delivery's deadline counts from the delivery that took.
    """
    now = timezone.now()
    lost_before = now - timedelta(seconds=settings.COMMAND_REDELIVER_AFTER)
    unacknowledged = Q(
        status=RunStatus.RUNNING, acknowledged_at__isnull=True, delivered_at__lt=lost_before, pickup_deadline__gt=now
    )
    candidates = (
        CommandRun.objects.filter(Q(status=RunStatus.PENDING) | unacknowledged, instance=instance)
        .select_related("command")
        .order_by("created", "id")[:limit]
    )
    delivered = []
    for run in candidates:
        deadline = now + timedelta(seconds=run.command.timeout_seconds)
        won = CommandRun.objects.filter(
            pk=run.pk, status=run.status, delivered_at=run.delivered_at, acknowledged_at__isnull=True
        ).update(status=RunStatus.RUNNING, delivered_at=now, finish_deadline=deadline, deliveries=F("deliveries") + 1)
        if won:
            run.status, run.delivered_at, run.finish_deadline = RunStatus.RUNNING, now, deadline
            run.deliveries += 1
            delivered.append(run)
    return delivered


def command_run_report(
    *,
    instance: Instance,
    run_id: int,
    status: str,
    output: str = "",
    error: str = "",
    progress: int | None = None,
    progress_message: str = "",
) -> CommandRun:
    """An agent reports progress or the result of one of its own runs."""
    run = CommandRun.objects.filter(pk=run_id, instance=instance).select_related("command").first()
    if run is None:
        raise NotFoundError("No such command run for this instance.")
    if status == RunStatus.RUNNING:
        CommandRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            progress=max(0, min(100, progress or 0)),
            progress_message=progress_message[:200],
            acknowledged_at=Coalesce(F("acknowledged_at"), Value(timezone.now())),
        )
        run.refresh_from_db()
        return run
    if status not in (RunStatus.COMPLETED, RunStatus.FAILED):
        raise ApplicationError(f"Unknown status '{status}': report running, completed or failed.")
    if status == RunStatus.FAILED and not error:
        error = "The agent reported a failure without details."
    won = CommandRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status,
        finished_at=timezone.now(),
        acknowledged_at=Coalesce(F("acknowledged_at"), Value(timezone.now())),
        output=output[:20000],
        error=error[:5000],
        progress=100 if status == RunStatus.COMPLETED else run.progress,
    )
    if not won:
        raise ApplicationError(f"This run is already {run.status}; its result cannot change.")
    run.refresh_from_db()
    transaction.on_commit(lambda: command_run_finished.send(sender=CommandRun, run_id=run.pk, status=status))
    return run


def command_runs_expire(*, now=None) -> int:
    """Fail runs never picked up, or picked up and never finished, with the reason. Returns how many."""
    now = now or timezone.now()
    expired = 0
    reasons = (
        (
            RunStatus.PENDING,
            "pickup_deadline__lt",
            "Not picked up by the instance before the pickup deadline (instance offline?).",
        ),
        (RunStatus.RUNNING, "finish_deadline__lt", "No result from the instance within the command timeout."),
    )
    for status, lookup, reason in reasons:
        ids = list(CommandRun.objects.filter(status=status, **{lookup: now}).values_list("pk", flat=True))
        for run_id in ids:
            if CommandRun.objects.filter(pk=run_id, status=status).update(
                status=RunStatus.FAILED, finished_at=now, error=reason
            ):
                expired += 1
                command_run_finished.send(sender=CommandRun, run_id=run_id, status=RunStatus.FAILED)
    return expired
