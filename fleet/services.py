"""Every write to the fleet: registration, heartbeats, groups and tags, the command queue, licenses."""

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from common.exceptions import ApplicationError, ConflictError, NotFoundError
from common.services import audit_log, audit_log_many, secret_hash

from . import commands as command_logic
from .choices import CommandSource, InstanceStatus, RunStatus, ScopeKind
from .licensing import LicenseError, verify_license
from .models import Command, CommandRun, Group, Instance, License, RegistrationToken, Tag, TokenUse
from .scopes import Scope, ScopeError, parse_tag_filter
from .selectors import instances_in_scope, offline_cutoff
from .signals import command_run_finished, instance_state_changed, instances_went_offline

logger = logging.getLogger(__name__)


def _new_agent_credential() -> tuple[str, str, str]:
    """A fresh agent credential: (key id, hash of the secret to store, the credential to hand out once)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return key_id, secret_hash(secret), f"{key_id}.{secret}"


# --- Groups and tags --------------------------------------------------------------------------


@transaction.atomic
def group_create(*, actor, name: str, description: str = "") -> Group:
    group = Group(name=name.strip(), description=description)
    group.full_clean()
    group.save()
    audit_log(actor=actor, action="group.create", obj=group)
    return group


@transaction.atomic
def group_update(*, actor, group: Group, name: str, description: str = "") -> Group:
    group.name, group.description = name.strip(), description
    group.full_clean()
    group.save()
    audit_log(actor=actor, action="group.update", obj=group)
    return group


@transaction.atomic
def group_delete(*, actor, group: Group) -> None:
    audit_log(actor=actor, action="group.delete", obj=group)
    group.delete()


def tags_get_or_create(tags: list[str]) -> list[Tag]:
    result = []
    for tag in parse_tag_filter(tags):
        key, value = tag.split("=", 1)
        result.append(Tag.objects.get_or_create(key=key, value=value)[0])
    return result


@transaction.atomic
def instance_update(
    *,
    actor,
    instance: Instance,
    address: str | None = None,
    groups: list[Group] | None = None,
    tags: list[str] | None = None,
) -> Instance:
    """Change what the panel decides about an instance: its health address, groups and tags."""
    changes = {}
    if address is not None and address != instance.address:
        changes["address"] = [instance.address, address]
        instance.address = address
        instance.save(update_fields=["address"])
    if groups is not None:
        before = sorted(g.name for g in instance.groups.all())
        instance.groups.set(groups)
        after = sorted(g.name for g in groups)
        if before != after:
            changes["groups"] = [before, after]
    if tags is not None:
        before = sorted(str(t) for t in instance.tags.all())
        tag_objs = tags_get_or_create(tags)
        instance.tags.set(tag_objs)
        after = sorted(str(t) for t in tag_objs)
        if before != after:
            changes["tags"] = [before, after]
    if changes:
        audit_log(actor=actor, action="instance.update", obj=instance, details=changes)
        # Group/tag changes move the instance in and out of scopes: re-evaluate like a state change.
        transaction.on_commit(lambda: instance_state_changed.send(sender=Instance, instance_id=instance.pk))
    return instance


@transaction.atomic
def instance_delete(*, actor, instance: Instance) -> None:
    audit_log(actor=actor, action="instance.delete", obj=instance)
    instance.delete()


def scope_apply(obj, scope: Scope) -> None:
    """Store `scope` on a saved ScopedModel (policy, command, canary, config entry)."""
    obj.scope_kind = scope.kind
    obj.scope_tags = list(scope.tags)
    obj.save(update_fields=["scope_kind", "scope_tags"])
    obj.scope_groups.set(scope.group_ids)
    obj.scope_instances.set(scope.instance_ids)


# --- Registration -----------------------------------------------------------------------------


@transaction.atomic
def registration_token_create(
    *, actor, name: str, max_uses: int | None = None, expires_at=None, groups=(), tags=()
) -> tuple[RegistrationToken, str]:
    """Create a token; returns it with the plaintext, which is shown once and never stored."""
    if max_uses is not None and max_uses < 1:
        raise ApplicationError("The usage limit must be at least 1 (or empty for unlimited).")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry date must be in the future.")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    token = RegistrationToken.objects.create(
        name=name,
        key_id=key_id,
        secret_hash=secret_hash(secret),
        max_uses=max_uses,
        expires_at=expires_at,
        created_by=actor if getattr(actor, "pk", None) else None,
        tags=parse_tag_filter(list(tags)),
    )
    token.groups.set(groups)
    audit_log(actor=actor, action="registration_token.create", obj=token, details={"max_uses": max_uses})
    return token, f"reg_{key_id}_{secret}"


@transaction.atomic
def registration_token_revoke(*, actor, token: RegistrationToken) -> RegistrationToken:
    if token.revoked_at:
        raise ApplicationError("This token is already revoked.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_log(actor=actor, action="registration_token.revoke", obj=token)
    return token


def _find_registration_token(plaintext: str) -> tuple[RegistrationToken | None, str]:
    try:
        prefix, key_id, secret = plaintext.split("_", 2)
    except (AttributeError, ValueError):
        return None, ""
    if prefix != "reg":
        return None, ""
    token = RegistrationToken.objects.select_for_update().filter(key_id=key_id).first()
    if token is None or not hmac.compare_digest(token.secret_hash, secret_hash(secret)):
        return None, ""
    return token, secret


def agent_register(
    *,
    token: str,
    name: str,
    hostname: str = "",
    address: str = "",
    os_version: str = "",
    remote_addr: str | None = None,
) -> tuple[Instance, str]:
    """Validate a registration token and create the instance; returns it and its agent credential.

    A rejected attempt on a known token is still written to the token's usage history.

    A retry is answered, not refused: if the agent's first attempt registered the instance but the reply
    was lost, the same token and name within REGISTRATION_RETRY_SECONDS, before the instance's first
    heartbeat, get a fresh credential for that instance (the lost one stops working) and use the
    token no further.
    """
    now = timezone.now()
    with transaction.atomic():
        record, _secret = _find_registration_token(token)
        if record is None:
            raise ApplicationError("The registration token is not valid.", extra={"code": "invalid_token"})
        retried = _registration_retried(record, name, now)
        if retried is not None:
            return _registration_repeat(record, retried, remote_addr)
        reason = record.invalid_reason(now)
        if reason is None and Instance.objects.filter(name=name).exists():
            reason = f"An instance named '{name}' is already registered."
        if reason is None:
            limit = _license_instance_limit()
            if limit is not None and Instance.objects.count() >= limit:
                reason = f"The license allows {limit} instances and all are in use."
        if reason is None:
            key_id, stored_hash, credential = _new_agent_credential()
            instance = Instance.objects.create(
                name=name,
                hostname=hostname,
                address=address,
                os_version=os_version,
                agent_key_id=key_id,
                agent_secret_hash=stored_hash,
            )
            instance.groups.set(record.groups.all())
            instance.tags.set(tags_get_or_create(record.tags))
            RegistrationToken.objects.filter(pk=record.pk).update(use_count=record.use_count + 1)
            TokenUse.objects.create(token=record, instance=instance, remote_addr=remote_addr)
            audit_log(actor=f"agent:{name}", action="instance.register", obj=instance, details={"token": record.name})
            logger.info("instance %s registered with token %r from %s", name, record.name, remote_addr or "?")
            return instance, credential
    # Outside the failed branch's transaction, so the history row survives the error response.
    TokenUse.objects.create(token=record, remote_addr=remote_addr, accepted=False, reason=reason[:200])
    raise ApplicationError(reason, extra={"code": "token_rejected"})


def _registration_retried(record: RegistrationToken, name: str, now) -> Instance | None:
    """The instance this token registered under `name` moments ago and that has not been heard from
    since, i.e. an agent repeating a registration whose reply it never got; None otherwise."""
    if record.invalid_reason(now, count_uses=False) is not None:
        return None
    window = timedelta(seconds=settings.REGISTRATION_RETRY_SECONDS)
    instance = Instance.objects.filter(
        name=name, status=InstanceStatus.PENDING, last_seen_at__isnull=True, registered_at__gte=now - window
    ).first()
    if instance is None or not TokenUse.objects.filter(token=record, instance=instance, accepted=True).exists():
        return None
    return instance


def _registration_repeat(record: RegistrationToken, instance: Instance, remote_addr) -> tuple[Instance, str]:
    credential = _replace_agent_credential(instance)
    TokenUse.objects.create(
        token=record, instance=instance, remote_addr=remote_addr, reason="repeated registration: new credential"
    )
    audit_log(
        actor=f"agent:{instance.name}", action="instance.register_repeat", obj=instance, details={"token": record.name}
    )
    logger.info(
        "instance %s repeated its registration with token %r from %s", instance.name, record.name, remote_addr or "?"
    )
    return instance, credential


def _license_instance_limit() -> int | None:
    from .licensing_store import current_license_status

    status = current_license_status()
    if status.info is None or status.plan == "community" and status.info.plan != "community":
        return None
    value = status.info.limits.get("max_instances")
    return int(value) if value else None


# What agent requests need up front (a heartbeat compares state_hash/status/agent_version); other
# fields load lazily if a caller reads them. Fewer columns keep the hottest query cheap.
AGENT_AUTH_FIELDS = ("id", "name", "status", "state_hash", "heartbeat_digest", "agent_version", "agent_secret_hash")


def agent_authenticate(credential: str) -> Instance | None:
    """The instance owning this credential, or None. Constant-time comparison of the secret hash."""
    try:
        key_id, secret = credential.split(".", 1)
    except (AttributeError, ValueError):
        return None
    # Raw SQL on the hottest query: the ORM's compilation would cost more than the query itself.
    table = Instance._meta.db_table
    sql = f'SELECT {", ".join(AGENT_AUTH_FIELDS)} FROM "{table}" WHERE "agent_key_id" = %s'  # noqa: S608 - constants
    with connection.cursor() as cursor:
        cursor.execute(sql, [key_id])
        row = cursor.fetchone()
    if row is None:
        return None
    instance = Instance.from_db(connection.alias, AGENT_AUTH_FIELDS, row)
    if not hmac.compare_digest(instance.agent_secret_hash, secret_hash(secret)):
        return None
    return instance


def agent_credential_rotate(*, actor, instance: Instance) -> str:
    credential = _replace_agent_credential(instance)
    audit_log(actor=actor, action="instance.rotate_credential", obj=instance)
    return credential


def _replace_agent_credential(instance: Instance) -> str:
    """Give the instance a new credential (the old one stops working) and return it, to hand out once."""
    key_id, stored_hash, credential = _new_agent_credential()
    Instance.objects.filter(pk=instance.pk).update(agent_key_id=key_id, agent_secret_hash=stored_hash)
    instance.agent_key_id = key_id
    return credential


# --- Heartbeats -------------------------------------------------------------------------------


def _normalise_state(state: dict) -> dict:
    apps = sorted(
        (
            {"name": a["name"], "version": str(a.get("version", "")), "running": bool(a.get("running", True))}
            for a in state.get("apps") or []
        ),
        key=lambda a: a["name"],
    )
    updates = sorted(
        (
            {
                "kind": u.get("kind", "app"),
                "name": u["name"],
                "version": str(u["version"]),
                "released_at": u["released_at"],
            }
            for u in state.get("updates") or []
        ),
        key=lambda u: (u["kind"], u["name"], u["version"]),
    )
    return {
        "os_version": str(state.get("os_version") or ""),
        "apps": apps,
        "settings": dict(state.get("settings") or {}),
        "updates": updates,
    }


def _state_digest(clean: dict) -> str:
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()


def heartbeat_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def heartbeat_touch(*, credential: str, body: bytes) -> bool:
    """The common heartbeat in one statement: credential valid, instance online, and the body byte for
    byte the one last stored by `heartbeat_record` (so state and agent version are unchanged, and it was
    validated then). Records it (last seen) and returns True; returns False when `heartbeat_record` must
    run instead (any other body, instance offline or pending, or the credential is not valid).

    The secret's SHA-256 is compared in SQL; that compares digests, so timing reveals nothing of the secret.
    """
    try:
        key_id, secret = credential.split(".", 1)
    except (AttributeError, ValueError):
        return False
    table = Instance._meta.db_table
    sql = (
        f'UPDATE "{table}" SET "last_seen_at" = %s WHERE "agent_key_id" = %s AND "agent_secret_hash" = %s'  # noqa: S608
        ' AND "heartbeat_digest" = %s AND "status" = %s'
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [now, key_id, secret_hash(secret), heartbeat_digest(body), InstanceStatus.ONLINE.value]
    if connection.vendor == "postgresql" and connection.get_autocommit():
        # Don't wait for the WAL flush: a heartbeat lost in a crash is re-sent within one interval,
        # and on a busy disk the flush, not the work, limits the rate. SET LOCAL ends with this
        # statement's implicit transaction, so nothing else on the connection commits asynchronously.
        sql = "SET LOCAL synchronous_commit TO OFF; " + sql
    return _execute_as_health_check(sql, params) == 1


def _execute_as_health_check(sql: str, params: list) -> int:
    """Run one idempotent statement, letting it stand in for the connection health check.

    With CONN_HEALTH_CHECKS a reused connection is first probed with its own round trip; on the heartbeat
    path that probe cost as much as the work. Here the statement is the probe: when it fails on a reused
    connection (the database restarted, say), the connection is replaced and the statement sent once
    more. Returns the row count of the last statement.
    """
    probe = (
        connection.connection is not None
        and connection.health_check_enabled
        and not connection.health_check_done
        and not connection.in_atomic_block
    )
    if probe:
        connection.health_check_done = True
    try:
        return _execute_rowcount(sql, params)
    except (OperationalError, InterfaceError):
        if not probe:
            raise
        logger.info("database connection was unusable; reconnecting")
        connection.close()
        return _execute_rowcount(sql, params)


def _execute_rowcount(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":  # several statements in one (SET LOCAL; ...): the last counts
            while cursor.nextset():
                pass
        return cursor.rowcount


def heartbeat_record(*, instance: Instance, state: dict, agent_version: str = "", body_digest: str = "") -> bool:
    """Record a validated heartbeat. Writes only what changed; returns True when the reported state changed.

    An unchanged heartbeat is one UPDATE of last_seen/status. A changed one also stores the state and,
    after commit, sends `instance_state_changed` so governance re-evaluates just this instance.
    `body_digest` (`heartbeat_digest` of the request body) lets the next identical body take
    `heartbeat_touch`.
    """
    now = timezone.now()
    clean = _normalise_state(state)
    digest = _state_digest(clean)
    fields = {"last_seen_at": now, "status": InstanceStatus.ONLINE}
    changed = digest != instance.state_hash
    if changed:
        fields.update(
            os_version=clean["os_version"],
            apps=clean["apps"],
            settings=clean["settings"],
            updates=clean["updates"],
            state_hash=digest,
            state_changed_at=now,
        )
    if agent_version and agent_version != instance.agent_version:
        fields["agent_version"] = agent_version
    if changed or (body_digest and body_digest != instance.heartbeat_digest):
        fields["heartbeat_digest"] = body_digest  # "" when the caller has no body: no touch until the next
    came_back = instance.status != InstanceStatus.ONLINE
    # One UPDATE is atomic on its own: no transaction block, so autocommit spares the BEGIN/COMMIT
    # round trips on the hottest path. on_commit runs at once in autocommit, or after an outer commit.
    if len(fields) == 2:
        # Nothing changed (the common case): a plain UPDATE, without the ORM's query compilation.
        table = Instance._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f'UPDATE "{table}" SET "last_seen_at" = %s, "status" = %s WHERE "id" = %s',  # noqa: S608 - constants
                [connection.ops.adapt_datetimefield_value(now), InstanceStatus.ONLINE.value, instance.pk],
            )
    else:
        Instance.objects.filter(pk=instance.pk).update(**fields)
    if changed or came_back:
        transaction.on_commit(lambda: instance_state_changed.send(sender=Instance, instance_id=instance.pk))
    for key, value in fields.items():
        setattr(instance, key, value)
    return changed


def instances_mark_offline(*, now=None) -> list[int]:
    """Online instances that missed OFFLINE_AFTER_MISSED heartbeats become offline. Returns their ids."""
    cutoff = offline_cutoff(now)
    qs = Instance.objects.filter(status=InstanceStatus.ONLINE, last_seen_at__lt=cutoff)
    ids = list(qs.values_list("pk", flat=True))
    if ids:
        # Re-check the cutoff in the UPDATE: a heartbeat that landed since the SELECT keeps its instance online.
        Instance.objects.filter(pk__in=ids, status=InstanceStatus.ONLINE, last_seen_at__lt=cutoff).update(
            status=InstanceStatus.OFFLINE
        )
        ids = list(Instance.objects.filter(pk__in=ids, status=InstanceStatus.OFFLINE).values_list("pk", flat=True))
    if ids:
        instances_went_offline.send(sender=Instance, instance_ids=ids)
    return ids


# --- Command queue ----------------------------------------------------------------------------


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
            raise ApplicationError(str(exc)) from exc
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
    """Deliver pending runs to their instance: each is claimed pending → running by a conditional update."""
    now = timezone.now()
    delivered = []
    candidates = (
        CommandRun.objects.filter(instance=instance, status=RunStatus.PENDING)
        .select_related("command")
        .order_by("created", "id")[:limit]
    )
    for run in candidates:
        deadline = now + timedelta(seconds=run.command.timeout_seconds)
        won = CommandRun.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(
            status=RunStatus.RUNNING, delivered_at=now, finish_deadline=deadline
        )
        if won:
            run.status, run.delivered_at, run.finish_deadline = RunStatus.RUNNING, now, deadline
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
            progress=max(0, min(100, progress or 0)), progress_message=progress_message[:200]
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


# --- Licenses ---------------------------------------------------------------------------------


@transaction.atomic
def license_upload(*, actor, text: str) -> License:
    """Verify and store a license; it is in force from now on. A bad license changes nothing."""
    try:
        info = verify_license(text, settings.LICENSE_PUBLIC_KEY)
    except LicenseError as exc:
        raise ApplicationError(str(exc)) from exc
    if info.state(timezone.now(), settings.LICENSE_GRACE_DAYS) == "expired":
        raise ApplicationError(f"This license expired on {info.expires_at:%Y-%m-%d} and its grace period is over.")
    record = License.objects.create(
        text="".join(text.split()),
        plan=info.plan,
        customer=info.customer,
        expires_at=info.expires_at,
        uploaded_by=actor if getattr(actor, "pk", None) else None,
    )
    audit_log(
        actor=actor,
        action="license.upload",
        obj=record,
        details={"plan": info.plan, "expires_at": info.expires_at.isoformat()},
    )
    return record


def scope_from_input(*, kind: str, groups=(), tags=(), instances=()) -> Scope:
    """Build a Scope from form/API input (group and instance objects or ids, tags as text or list)."""
    try:
        return Scope(
            kind=kind,
            group_ids=tuple(sorted(getattr(g, "pk", g) for g in groups)) if kind == ScopeKind.GROUPS else (),
            tags=tuple(parse_tag_filter(tags)) if kind == ScopeKind.TAGS else (),
            instance_ids=tuple(sorted(getattr(i, "pk", i) for i in instances)) if kind == ScopeKind.INSTANCES else (),
        )
    except ScopeError as exc:
        raise ApplicationError(str(exc)) from exc
