"""The heartbeat's fast path: lock one instance and read everything its evaluation needs in two statements.

What it buys (bench/evaluation.py, item 2): the general path (`locks.lock_instances` + `store.read` +
the policy and waiver versions) is about ten ORM statements, each a round trip and a query
compilation, for one instance; here it is one lock statement and one read, written once as SQL over
the models' table and column names. The writes stay `store.apply`'s. On SQLite (one writer at a time,
no round trips) it is the general path.

The read must be a statement of its own after the lock: in READ COMMITTED a statement sees what was
committed when it started, so a read in the same statement as a lock that waited would miss the
evaluation it waited for.
"""

import json
from datetime import datetime

from django.db import connection

from fleet.models import Instance, Tag

from ..choices import CURRENT_STATUSES
from ..models import InstanceCompliance, Policy, PolicyException, ReleaseRecord, Violation
from . import store
from .diff import InstanceState, OpenRelease, OpenViolation, Standing
from .locks import INSTANCE_KEYS, POLICIES_KEY, lock_instances

# The policies' shared lock first, then the instance's (the order of locks.lock_instances); OFFSET 0
# keeps the planner from merging the two, which would leave their order to it.
LOCK_SQL = "SELECT pg_advisory_xact_lock(%s) FROM (SELECT pg_advisory_xact_lock_shared(%s) OFFSET 0) AS policies"


def _read_sql() -> str:
    t = {
        "instance": Instance._meta.db_table,
        "groups": Instance.groups.through._meta.db_table,
        "tags": Instance.tags.through._meta.db_table,
        "tag": Tag._meta.db_table,
        "release": ReleaseRecord._meta.db_table,
        "violation": Violation._meta.db_table,
        "standing": InstanceCompliance._meta.db_table,
        "policy": Policy._meta.db_table,
        "waiver": PolicyException._meta.db_table,
    }
    statuses = ", ".join(f"'{s.value}'" for s in CURRENT_STATUSES)
    return f"""
        SELECT i.id, i.name, i.status, i.last_seen_at, i.os_version,
            CASE WHEN i.apps_text IS NULL THEN i.apps END, i.settings, i.updates, i.apps_text,
            ARRAY(SELECT g.group_id FROM {t["groups"]} g WHERE g.instance_id = i.id),
            ARRAY(SELECT t.key || '=' || t.value FROM {t["tags"]} it JOIN {t["tag"]} t ON t.id = it.tag_id
                  WHERE it.instance_id = i.id),
            (SELECT json_agg(json_build_array(r.id, r.kind, r.name, r.version, r.released_at) ORDER BY r.id)
               FROM {t["release"]} r WHERE r.instance_id = i.id AND r.closed_at IS NULL),
            (SELECT json_agg(json_build_array(v.id, v.policy_id, v.rule_key, v.status, v.evidence,
                                              v.exception_id, v.severity) ORDER BY v.id)
               FROM {t["violation"]} v WHERE v.instance_id = i.id AND v.status IN ({statuses})),
            (SELECT json_build_array(c.met, c.applicable, c.exempt, c.score, c.stale, c.states, c.invalid_reason)
               FROM {t["standing"]} c WHERE c.instance_id = i.id),
            p.n, p.updated, p.top, w.n, w.top, w.revoked
        FROM {t["instance"]} i,
            (SELECT count(*) AS n, max(updated) AS updated, max(id) AS top FROM {t["policy"]}) AS p,
            (SELECT count(*) AS n, max(id) AS top, max(revoked_at) AS revoked FROM {t["waiver"]}) AS w
        WHERE i.id = %s
    """  # noqa: S608 - identifiers from model metadata, the one value a parameter


_SQL: dict = {}


def lock_and_read(instance_id: int) -> tuple[list, tuple | None, tuple | None]:
    """Lock one instance (and the policies, shared) for the current transaction and read it:
    → (store.read's rows: [] if it is gone, the policies' version, the waivers' version)."""
    if connection.vendor != "postgresql":
        lock_instances([instance_id])
        return list(store.read([instance_id])), None, None
    sql = _SQL.get("read") or _SQL.setdefault("read", _read_sql())
    with connection.cursor() as cursor:
        cursor.execute(LOCK_SQL, [INSTANCE_KEYS + instance_id, POLICIES_KEY])
        cursor.execute(sql, [instance_id])
        row = cursor.fetchone()
    if row is None:
        return [], None, None
    iid, name, status, last_seen_at, os_version, apps, settings, updates, apps_text, groups, tags = row[:11]
    releases, violations, standing = row[11:14]
    fields = store.state_row(
        (iid, name, status, last_seen_at, os_version, _json(apps), _json(settings), _json(updates), apps_text)
    )
    state = InstanceState(*fields, group_ids=frozenset(groups), tags=frozenset(tags))
    open_releases = [OpenRelease(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in releases or ()]
    open_violations = [OpenViolation(*v) for v in violations or ()]
    old = Standing(*standing) if standing is not None else None
    return [(state, open_releases, open_violations, old)], tuple(row[14:17]), tuple(row[17:20])


def _json(value):
    """jsonb columns come as text through Django's connection (it parses them in the ORM)."""
    return json.loads(value) if isinstance(value, str) else value
