"""Heartbeats: an agent's reported state recorded (the full path) or touched (the fast lane), and
instances that stopped reporting marked offline."""

import hashlib
import json
import logging

from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from common.exceptions import ApplicationError
from common.services import secret_hash
from fleet import app_index
from fleet.choices import InstanceStatus
from fleet.models import Instance
from fleet.selectors import offline_cutoff
from fleet.signals import instance_state_changed, instances_went_offline
from fleet.state import validate_heartbeat

logger = logging.getLogger(__name__)


def _json_digest(value) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()


def state_digests(clean: dict) -> tuple[str, str]:
    """(digest of the whole state, digest of its apps) for a normalised state (fleet.state): equal
    digests, equal states. Apps and updates come in a fixed order with fixed keys; settings are put
    in key order. The whole digest covers the apps through their own, so they are serialised once."""
    apps = _json_digest(clean["apps"])
    rest = [clean["os_version"], sorted(clean["settings"].items()), clean["updates"]]
    return _json_digest([apps, rest]), apps


def _state_fields(instance: Instance, clean: dict, digests: tuple[str, str], now) -> dict:
    """The columns a changed state rewrites. The apps are rewritten only when their own digest changed:
    a real server reports 1,000–3,000 packages (about 230 KB), most changes are elsewhere (a setting,
    an available update), and rewriting that column was most of a changed heartbeat's cost
    (bench/heartbeat.py, the 3,000-package case)."""
    whole, apps = digests
    fields = {
        "os_version": clean["os_version"],
        "settings": clean["settings"],
        "updates": clean["updates"],
        "state_hash": whole,
        "state_changed_at": now,
    }
    if apps != instance.apps_hash:
        fields.update(apps=clean["apps"], apps_hash=apps, apps_text=app_index.apps_text(clean["apps"]))
    return fields


def heartbeat_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def heartbeat_touch(*, credential: str, body: bytes = b"", digest: str = "") -> bool:
    """The common heartbeat in one statement: credential valid, instance online, and the body byte for
    byte the one last stored by `heartbeat_record` (so state and agent version are unchanged, and it was
    validated then). Records it (last seen) and returns True; returns False when `heartbeat_record` must
    run instead (any other body, instance offline or pending, or the credential is not valid).

    A conditional heartbeat sends no body, only the `digest` of the last one (`If-Match: "<digest>"`):
    the same check without the upload, which for a server with 3,000 packages is most of the cost.

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
    digest = digest or heartbeat_digest(body)
    params = [now, key_id, secret_hash(secret), digest, InstanceStatus.ONLINE.value]
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


def heartbeat_record(
    *, instance: Instance, state: dict, agent_version: str | None = None, body_digest: str = ""
) -> bool:
    """Record a heartbeat. Writes only what changed; returns True when the reported state changed.

    `state` is what the agent sent: checked and normalised here (fleet.state.validate_heartbeat), so no
    caller can store a state governance cannot evaluate; a bad one raises ApplicationError naming every
    problem by path and changes nothing. `agent_version`, when given, replaces the state's own.
    An unchanged heartbeat is one UPDATE of last_seen/status. A changed one also stores the state and,
    after commit, sends `instance_state_changed` so governance re-evaluates just this instance.
    `body_digest` (`heartbeat_digest` of the request body) lets the next identical body take
    `heartbeat_touch`.
    """
    if agent_version is not None:
        state = {**state, "agent_version": agent_version} if isinstance(state, dict) else state
    clean, errors = validate_heartbeat(state)
    if errors:
        raise ApplicationError.from_errors(errors)
    now = timezone.now()
    agent_version = clean.pop("agent_version")
    digests = state_digests(clean)
    fields = {"last_seen_at": now, "status": InstanceStatus.ONLINE}
    changed = digests[0] != instance.state_hash
    if changed:
        fields.update(_state_fields(instance, clean, digests, now))
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
