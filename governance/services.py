"""Every write of governance: policies, evaluation (violations, scores, release records), exceptions, snapshots.

Evaluation is instance-centric: the chosen instances (one, a policy's scope, or the whole fleet) are
read in bulk (values() of their state and memberships), checked in memory against every enabled
policy, and only the rows that changed are written (bulk_create / bulk_update / one UPDATE per kind).
"""

import json
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date as date_cls
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import EmptyResultSet
from django.db import connection, models, transaction
from django.db.models import Avg, Count, OuterRef, Value
from django.db.models.functions import Concat
from django.urls import reverse
from django.utils import timezone

from common.choices import NotificationLevel
from common.exceptions import ApplicationError, NotFoundError
from common.services import audit_log, notify_admins
from fleet.choices import InstanceStatus, ScopeKind
from fleet.models import Instance, Tag
from fleet.scopes import Scope
from fleet.selectors import instance_memberships, instances_in_scope
from fleet.services import scope_apply

from . import evaluators
from .choices import (
    CURRENT_STATUSES,
    SEVERITY_BY_TYPE,
    PolicyState,
    PolicyType,
    Severity,
    SnapshotKind,
    ViolationStatus,
)
from .models import (
    ComplianceSnapshot,
    InstanceCompliance,
    InstanceSnapshot,
    Policy,
    PolicyCompliance,
    PolicyException,
    ReleaseRecord,
    Violation,
)

logger = logging.getLogger(__name__)

_VIOLATION_FIELDS = [f.attname for f in Violation._meta.concrete_fields]
assert _VIOLATION_FIELDS == [
    "id",
    "policy_id",
    "policy_name",
    "instance_id",
    "rule_key",
    "rule",
    "evidence",
    "severity",
    "status",
    "first_detected_at",
    "last_seen_at",
    "resolved_at",
    "exception_id",
], "Violation fields changed: update the row tuples built in _evaluate (VIOLATION_INSERT_COLUMNS order)"

# Beyond this many newly opened critical violations in one evaluation, admins get one summary.
NOTIFY_INDIVIDUALLY_UP_TO = 5
# Evaluations of at most this many instances also refresh last_seen_at of violations still failing.
REFRESH_LAST_SEEN_UP_TO = 500


def stale_after() -> timedelta:
    return timedelta(seconds=getattr(settings, "GOVERNANCE_STALE_AFTER_SECONDS", 3600))


# --- Policies in memory -----------------------------------------------------------------------


@dataclass
class PolicySpec:
    id: int
    name: str
    policy_type: str
    severity: str
    scope: Scope
    checker: evaluators.Checker

    def __post_init__(self):
        self.key = str(self.id)  # key in InstanceCompliance.states
        self.by_instance = self.scope.kind == ScopeKind.INSTANCES
        # Precomputed form of Scope.matches: called for every (instance, policy) pair.
        self._groups = frozenset(self.scope.group_ids)
        self._tags = frozenset(self.scope.tags)
        self._ids = frozenset(self.scope.instance_ids)

    def matches(self, instance_id: int, group_ids, tags) -> bool:
        kind = self.scope.kind
        if kind == ScopeKind.ALL:
            return True
        if kind == ScopeKind.GROUPS:
            return not self._groups.isdisjoint(group_ids)
        if kind == ScopeKind.TAGS:
            return self._tags <= tags
        return instance_id in self._ids


_spec_cache: dict = {"key": None, "specs": None}
COPY_THRESHOLD = 500  # rows; below it bulk_create's single statement is as fast
SMALL_EVALUATION = 100  # instances; up to this many, every read goes in one round trip


def _versions_sql(now) -> tuple[str, list]:
    """What identifies the current set of policies, and how many exceptions are active (one row)."""
    sql = (
        # Table names come from model metadata, values are parameters.
        f"SELECT COUNT(*), MAX(updated), MAX(id), (SELECT COUNT(*) FROM {PolicyException._meta.db_table} "  # noqa: S608
        f"WHERE revoked_at IS NULL AND expires_at > %s) FROM {Policy._meta.db_table}"
    )
    return sql, [now]


def _versions_from_row(row) -> tuple[tuple, int]:
    n, updated, max_id, active_exceptions = row
    return (n, str(updated), max_id), active_exceptions


def _versions(now) -> tuple[tuple, int]:
    [rows] = _read_many([_versions_sql(now)])
    return _versions_from_row(rows[0])


def enabled_policy_specs(key: tuple | None = None) -> list[PolicySpec]:
    """Enabled policies, compiled. Cached per process until any policy changes (one cheap query to check)."""
    if key is None:
        key = _versions(timezone.now())[0]
    if _spec_cache["key"] == key and _spec_cache["specs"] is not None:
        return _spec_cache["specs"]
    specs = [
        PolicySpec(
            id=p.pk,
            name=p.name,
            policy_type=p.policy_type,
            severity=SEVERITY_BY_TYPE[p.policy_type].value,  # plain str: it goes to COPY as it is
            scope=p.scope,
            checker=evaluators.Checker(p.policy_type, p.rules),
        )
        for p in Policy.objects.filter(enabled=True).prefetch_related("scope_groups", "scope_instances")
    ]
    _spec_cache.update(key=key, specs=specs)
    return specs


@dataclass
class ExceptionSpec:
    id: int
    policy_id: int
    rule_key: str
    matcher: PolicySpec  # reuse the scope matcher


def _active_exceptions(now) -> dict[int, list[ExceptionSpec]]:
    result = defaultdict(list)
    qs = PolicyException.objects.filter(revoked_at__isnull=True, expires_at__gt=now).prefetch_related(
        "scope_groups", "scope_instances"
    )
    for e in qs:
        matcher = PolicySpec(id=e.pk, name="", policy_type="", severity="", scope=e.scope, checker=None)
        result[e.policy_id].append(ExceptionSpec(id=e.pk, policy_id=e.policy_id, rule_key=e.rule_key, matcher=matcher))
    return result


def _small_memberships_sql(instance_ids: list[int]) -> tuple[str, list]:
    """Groups and tags of a few instances in one statement (rows: instance_id, group_id, key, value)."""
    groups_through, tags_through = Instance.groups.through, Instance.tags.through
    marks = ", ".join(["%s"] * len(instance_ids))
    sql = (
        f"SELECT instance_id, group_id, NULL, NULL FROM {groups_through._meta.db_table} WHERE instance_id IN ({marks}) "  # noqa: S608
        f"UNION ALL SELECT it.instance_id, NULL, t.key, t.value FROM {tags_through._meta.db_table} it "
        f"JOIN {Tag._meta.db_table} t ON t.id = it.tag_id WHERE it.instance_id IN ({marks})"
    )
    return sql, [*instance_ids, *instance_ids]


def _memberships_from_rows(rows) -> dict[int, tuple[set[int], set[str]]]:
    result: dict[int, tuple[set[int], set[str]]] = defaultdict(lambda: (set(), set()))
    for instance_id, group_id, key, value in rows:
        if group_id is not None:
            result[instance_id][0].add(group_id)
        else:
            result[instance_id][1].add(f"{key}={value}")
    return result


def _compile(queryset) -> tuple[str, list, Callable[[list], list]]:
    """A values_list queryset as SQL, parameters, and the function that converts its raw rows the way the
    ORM does (JSON decoded, and so on). Raises EmptyResultSet when the query can match nothing."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    converters = compiler.get_converters([s[0] for s in compiler.select[: compiler.col_count]])

    def convert(rows):
        return [tuple(r) for r in compiler.apply_converters(rows, converters)] if converters else list(rows)

    return sql, list(params), convert


def _read_many(statements: list, *, relaxed_commit: bool = False) -> list[list]:
    """Run several reads and return each one's rows; on PostgreSQL in a single round trip.

    A statement is a queryset (rows come back converted exactly as the ORM would give them), a
    `(sql, params)` pair (rows as the driver returns them), or a `(sql, params, convert)` triple (see
    `_precompiled`: `convert(rows)` gives the rows as the ORM would). A heartbeat's evaluation needs five reads;
    at about a millisecond per round trip, sending them together is most of its cost saved.

    `relaxed_commit` (inside an evaluation's transaction, PostgreSQL only) also tells the server not to
    wait for the WAL flush at COMMIT: evaluation results are derived data that the next sweep rebuilds,
    so losing the last few milliseconds of them in a crash costs nothing.
    """
    compiled, empty = [], set()
    for i, statement in enumerate(statements):
        if isinstance(statement, tuple):
            sql, params, *convert = statement
            compiled.append((sql, list(params), convert[0] if convert else None))
            continue
        try:
            sql, params, convert = _compile(statement)
        except EmptyResultSet:  # e.g. `id IN ()`: nothing to ask the database
            empty.add(i)
            continue
        compiled.append((sql, params, convert))
    results = []
    if not compiled:
        return [[] for _ in statements]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            prefix = "SET LOCAL synchronous_commit TO OFF; " if relaxed_commit else ""
            cursor.execute(
                prefix + "; ".join(sql for sql, _, _ in compiled), [p for _, params, _ in compiled for p in params]
            )
            if prefix:
                cursor.nextset()
            fetched = []
            for i in range(len(compiled)):
                if i:
                    cursor.nextset()
                fetched.append(cursor.fetchall())
        else:
            fetched = []
            for sql, params, _ in compiled:
                cursor.execute(sql, params)
                fetched.append(cursor.fetchall())
    for rows, (_, _, convert) in zip(fetched, compiled, strict=True):
        results.append(convert(rows) if convert else rows)
    for i in sorted(empty):
        results.insert(i, [])
    return results


# --- The evaluation's reads: instances (with their standing), open release records, current violations.
STANDING_READ_COLS = ("met", "applicable", "exempt", "score", "stale", "states")
RELEASE_READ_COLS = ("id", "instance_id", "kind", "name", "version", "released_at")


def _instances_read(ids):
    qs = Instance.objects.all() if ids is None else Instance.objects.filter(pk__in=ids)
    # The instance's current standing comes along (LEFT JOIN): one read fewer per heartbeat.
    return qs.values_list(
        "id",
        "name",
        "status",
        "last_seen_at",
        "os_version",
        "apps",
        "settings",
        "updates",
        *(f"compliance__{c}" for c in STANDING_READ_COLS),
    )


def _instances_with_memberships_read(ids):
    """_instances_read plus each instance's group ids and `key=value` tags (PostgreSQL arrays): the
    memberships a small evaluation needs, without a read of their own."""
    groups = Instance.groups.through.objects.filter(instance_id=OuterRef("pk")).values("group_id")
    tags = (
        Instance.tags.through.objects.filter(instance_id=OuterRef("pk"))
        .annotate(pair=Concat("tag__key", Value("="), "tag__value"))
        .values("pair")
    )
    qs = Instance.objects.filter(pk__in=ids).annotate(
        member_groups=ArraySubquery(groups), member_tags=ArraySubquery(tags)
    )
    fields = _instances_read(ids).query.values_select
    return qs.values_list(*fields, "member_groups", "member_tags")


def _releases_read(ids):
    qs = ReleaseRecord.objects.filter(closed_at__isnull=True)
    return (qs if ids is None else qs.filter(instance_id__in=ids)).values_list(*RELEASE_READ_COLS)


def _violations_read(ids):
    qs = Violation.objects.filter(status__in=CURRENT_STATUSES)
    return (qs if ids is None else qs.filter(instance_id__in=ids)).values_list(
        "id", "policy_id", "instance_id", "rule_key", "status", "evidence", "exception_id", "severity"
    )


_compiled_reads = threading.local()


def _precompiled(build, ids: list[int]):
    """`build(ids)` as a `(sql, params, convert)` statement for _read_many, compiled once per thread and
    number of ids: building and compiling the three querysets cost more than a heartbeat's evaluation.

    The cached SQL is reused only when compiling put the ids, in order, at the end of the parameters;
    otherwise the queryset is returned as it is.
    """
    cache = getattr(_compiled_reads, "entries", None)
    if cache is None:
        cache = _compiled_reads.entries = {}
    key = (build, len(ids), connection.alias)
    entry = cache.get(key)
    if entry is None:
        queryset = build(ids)
        sql, params, convert = _compile(queryset)
        n = len(ids)
        if params[len(params) - n :] != ids:
            return queryset
        entry = cache[key] = (sql, params[: len(params) - n], convert)
    sql, fixed, convert = entry
    return sql, [*fixed, *ids], convert


def _is_stale(status: str, last_seen_at, now) -> bool:
    """Offline (or never seen) for longer than the threshold: the reported state can no longer be trusted."""
    if status == InstanceStatus.ONLINE:
        return False
    return last_seen_at is None or now - last_seen_at > stale_after()


# --- Evaluation -------------------------------------------------------------------------------


def _insert_fields(model) -> list:
    return [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]


def _prepared_row(obj, fields) -> tuple:
    return tuple(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields)


def bulk_insert(model, objs: list, *, batch_size: int = 2000) -> None:
    """Insert model instances, skipping any row that conflicts (a concurrent evaluation inserted it first)."""
    if not objs:
        return
    if connection.vendor != "postgresql" or len(objs) < COPY_THRESHOLD:
        model.objects.bulk_create(objs, batch_size=batch_size, ignore_conflicts=True)
        return
    fields = _insert_fields(model)
    bulk_insert_rows(model, [f.attname for f in fields], [_prepared_row(o, fields) for o in objs])


def bulk_insert_rows(model, columns: list[str], rows: list[tuple], *, batch_size: int = 2000) -> None:
    """Insert rows of plain values (str, int, float, bool, None, aware datetime: what the driver adapts
    as it is) given in `columns` (attnames), skipping any row that conflicts.

    On PostgreSQL, large batches go through COPY into a temporary table and one
    `INSERT … SELECT … ON CONFLICT DO NOTHING`: a cold sweep opens tens of thousands of violations, and
    COPY of plain tuples avoids building a model instance and adapting every value in Python.
    """
    if not rows:
        return
    if connection.vendor != "postgresql" or len(rows) < COPY_THRESHOLD:
        objs = [model(**dict(zip(columns, row, strict=True))) for row in rows]
        model.objects.bulk_create(objs, batch_size=batch_size, ignore_conflicts=True)
        return
    table = model._meta.db_table
    temp = f"copy_{table}"
    cols = ", ".join(connection.ops.quote_name(model._meta.get_field(c).column) for c in columns)
    # Identifiers come from model metadata; no value is interpolated into SQL.
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE {temp} AS SELECT {cols} FROM {table} WITH NO DATA")  # noqa: S608
        with cursor.cursor.copy(f"COPY {temp} ({cols}) FROM STDIN") as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        cursor.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT DO NOTHING")  # noqa: S608
        cursor.execute(f"DROP TABLE {temp}")


class _BackgroundCopy:
    """New rows of a large evaluation, inserted by a helper thread while the evaluation goes on.

    The evaluation's loop is Python on one core; PostgreSQL's side of the inserts (COPY, index entries,
    foreign-key checks) runs in another process that would otherwise wait for the loop to end. The
    thread takes chunks of rows from a queue and, on the same database connection (so in the same
    transaction), COPYs each into a temporary table and moves it with `INSERT … ON CONFLICT DO
    NOTHING`, as bulk_insert_rows does. The loop does not touch the connection until `finish()` has
    joined the thread; an error in the thread is raised there and the transaction rolls back whole.

    `put(model, rows)` takes the whole, growing list of one kind each time and sends what is new once
    at least CHUNK rows have piled up.
    """

    CHUNK = 4000

    def __init__(self):
        self.sent: dict = {}
        self.queue: queue.Queue = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.raw = connection.connection  # psycopg's connection: the evaluation's open transaction
        self.sql = {}
        with connection.cursor() as cursor:
            # Foreign keys are checked as each chunk is inserted (by the thread, while the loop runs)
            # rather than all at COMMIT, where tens of thousands of deferred checks would wait in line.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for model, columns in (
                (Violation, VIOLATION_INSERT_COLUMNS),
                (InstanceCompliance, STANDING_INSERT_COLUMNS),
            ):
                table, temp = model._meta.db_table, f"stream_{model._meta.db_table}"
                cols = ", ".join(connection.ops.quote_name(model._meta.get_field(c).column) for c in columns)
                # Identifiers come from model metadata; no value is interpolated into SQL.
                cursor.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {temp} ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA"  # noqa: S608
                )
                self.sql[model] = (
                    f"COPY {temp} ({cols}) FROM STDIN",
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT DO NOTHING; TRUNCATE {temp}",  # noqa: S608
                )
        self.thread = threading.Thread(target=self._run, name="evaluation-copy", daemon=True)
        self.thread.start()

    def put(self, model, rows: list, *, force: bool = False) -> None:
        start = self.sent.get(model, 0)
        if len(rows) - start >= (1 if force else self.CHUNK):
            self.queue.put((model, rows[start:]))
            self.sent[model] = len(rows)

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                model, rows = item
                copy_sql, move_sql = self.sql[model]
                with self.raw.cursor() as cursor:
                    with cursor.copy(copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
                    cursor.execute(move_sql)
        except BaseException as exc:  # raised by finish(); keep draining so that put() never blocks
            self.error = exc
            while self.queue.get() is not None:
                pass

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        self._restore_deferral()

    def abort(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    @staticmethod
    def _restore_deferral() -> None:
        """Back to how Django declares its foreign keys (INITIALLY DEFERRED) for the rest of a caller's
        transaction."""
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _chunks(items, size=2000):
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def evaluate_instances(*, instance_ids: list[int] | None = None, now=None) -> dict:
    """Evaluate instances (None: the whole fleet) against every enabled policy and store the outcome.

    A few instances on PostgreSQL (a heartbeat's evaluation) take two round trips and no transaction
    block: every read in one multi-statement query, every write in another, which PostgreSQL runs as one
    implicit transaction (all or nothing). Anything larger runs in a transaction with bulk writes.
    """
    now = now or timezone.now()
    if (
        instance_ids is not None
        and 0 < len(instance_ids) <= SMALL_EVALUATION
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    ):
        return _evaluate(instance_ids, now, batched=True)
    with transaction.atomic():
        return _evaluate(instance_ids, now, batched=False)


def _evaluate(instance_ids: list[int] | None, now, *, batched: bool) -> dict:
    """The evaluation proper (see evaluate_instances); `batched`: writes go as one multi-statement query.

    1. Read the instances' state, memberships, open release records, current violations and
       standings in bulk.
    2. Per instance: record newly offered / applied releases, then check each policy in scope
       (a stale instance is "unknown" for all of them and its violations are left as they are).
    3. Diff against the current violations: new failures open (or are exempted), changed evidence
       or exemption is updated, failures that disappeared are resolved. Only changed rows are written.
    4. Store each instance's standing and adjust the per-policy counts; notify admins of newly
       opened critical violations.
    """
    full = instance_ids is None
    if full:
        version_rows, joined_rows, release_rows, violation_rows = _read_many(
            [_versions_sql(now), _instances_read(None), _releases_read(None), _violations_read(None)],
            relaxed_commit=True,
        )
        memberships = instance_memberships()
    else:
        ids = list(instance_ids)
        small = 0 < len(ids) <= SMALL_EVALUATION
        folded = small and connection.vendor == "postgresql"  # memberships come with the instances
        statements = [
            _versions_sql(now),
            _precompiled(_instances_with_memberships_read if folded else _instances_read, ids),
            _precompiled(_releases_read, ids),
            _precompiled(_violations_read, ids),
        ]
        if small and not folded:
            statements.append(_small_memberships_sql(ids))
        version_rows, joined_rows, release_rows, violation_rows, *membership_rows = _read_many(
            statements, relaxed_commit=not batched
        )
        if folded:
            memberships = {row[0]: (set(row[-2]), set(row[-1])) for row in joined_rows}
        elif small:
            memberships = _memberships_from_rows(membership_rows[0])
        else:
            memberships = instance_memberships(ids)
    versions, active_exceptions = _versions_from_row(version_rows[0])
    policies = enabled_policy_specs(versions)
    policy_by_id = {p.id: p for p in policies}
    exceptions = _active_exceptions(now) if active_exceptions else {}

    rows, standings = [], {}
    for row in joined_rows:
        rows.append(row[:8])
        if row[8] is not None:
            standings[row[0]] = dict(zip(STANDING_READ_COLS, row[8:14], strict=True))

    open_releases = defaultdict(list)
    for rec in release_rows:
        rec = dict(zip(RELEASE_READ_COLS, rec, strict=True))
        open_releases[rec["instance_id"]].append(rec)

    current = defaultdict(dict)
    for v in violation_rows:
        current[v[2]][(v[1], v[3])] = v

    to_create, to_update, to_resolve, still_failing = [], [], [], []
    new_releases, closed_releases = [], defaultdict(list)
    opened_critical = []  # (policy name, instance name, evidence)
    standing_new, standing_changed = [], []
    policy_delta = defaultdict(lambda: defaultdict(int))
    policy_absolute = defaultdict(lambda: defaultdict(int))
    # Instances with the same groups and tags are in the same scopes: match once per combination.
    shared = [p for p in policies if not p.by_instance]
    per_instance = [p for p in policies if p.by_instance]
    scope_cache: dict = {}

    # A large evaluation on PostgreSQL hands its new rows to a helper thread as it goes, so that the
    # database inserts them while the remaining instances are checked (see _BackgroundCopy).
    streaming = _BackgroundCopy() if len(rows) > COPY_THRESHOLD and connection.vendor == "postgresql" else None
    try:
        for instance_id, name, status, last_seen_at, os_version, apps, settings_, updates in rows:
            group_ids, tags = memberships.get(instance_id) or (set(), set())
            stale = _is_stale(status, last_seen_at, now)
            combo = (frozenset(group_ids), frozenset(tags))
            in_scope = scope_cache.get(combo)
            if in_scope is None:
                in_scope = scope_cache[combo] = [p for p in shared if p.matches(instance_id, combo[0], combo[1])]
            if per_instance:
                in_scope = in_scope + [p for p in per_instance if instance_id in p._ids]
            existing = current.get(instance_id, {})
            desired = {}  # (policy_id, rule_key) -> (PolicySpec, Failure, exception_id)
            states = {}
            keep = set()  # current rows of a stale instance: left as they are
            if stale:
                for p in in_scope:
                    states[p.key] = PolicyState.UNKNOWN
                keep = {k for k in existing if k[0] in policy_by_id and str(k[0]) in states}
            else:
                state = {"os_version": os_version, "apps": apps, "settings": settings_, "updates": updates}
                facts = evaluators.Facts(state)
                records = open_releases.get(instance_id, [])
                pending_since = {}
                if records or updates:
                    created, closed = evaluators.release_transitions(state, records)
                    for rec_id, outcome in closed.items():
                        closed_releases[outcome].append(rec_id)
                    for item in created:
                        released = evaluators.parse_time(item["released_at"]) or now
                        new_releases.append(
                            ReleaseRecord(
                                instance_id=instance_id,
                                kind=item["kind"],
                                name=item["name"],
                                version=item["version"],
                                released_at=released,
                                first_seen_at=now,
                            )
                        )
                        records = [
                            *records,
                            {"id": None, "kind": item["kind"], "name": item["name"], "released_at": released},
                        ]
                    for rec in records:
                        if rec["id"] in closed:
                            continue
                        target = evaluators.target_key(rec["kind"], rec["name"])
                        if target not in pending_since or rec["released_at"] < pending_since[target]:
                            pending_since[target] = rec["released_at"]
                for p in in_scope:
                    failures = p.checker.check(facts, now, pending_since)
                    policy_exceptions = exceptions.get(p.id)
                    if not policy_exceptions:
                        for f in failures:
                            desired[(p.id, f.rule_key)] = (p, f, None)
                        states[p.key] = PolicyState.NONCOMPLIANT if failures else PolicyState.COMPLIANT
                        continue
                    covering = [e for e in policy_exceptions if e.matcher.matches(instance_id, group_ids, tags)]
                    whole = next((e.id for e in covering if not e.rule_key), None)
                    by_rule = {e.rule_key: e.id for e in covering if e.rule_key}
                    unexempted = 0
                    for f in failures:
                        exc_id = whole or by_rule.get(f.rule_key)
                        unexempted += exc_id is None
                        desired[(p.id, f.rule_key)] = (p, f, exc_id)
                    if whole is not None:
                        states[p.key] = PolicyState.EXEMPT
                    else:
                        states[p.key] = PolicyState.NONCOMPLIANT if unexempted else PolicyState.COMPLIANT

            # Violations: diff desired against current.
            for key, row in existing.items():
                if key in keep:
                    continue
                vid, _pid, _iid, _rk, vstatus, evidence, exc_id, severity = row
                if key not in desired:
                    to_resolve.append(vid)
                    continue
                p, f, want_exc = desired.pop(key)
                want_status = ViolationStatus.EXEMPTED if want_exc else ViolationStatus.OPEN
                if evidence != f.evidence or vstatus != want_status or exc_id != want_exc:
                    to_update.append(
                        Violation(
                            pk=vid,
                            evidence=f.evidence,
                            rule=f.rule[:300],
                            status=want_status,
                            exception_id=want_exc,
                            last_seen_at=now,
                        )
                    )
                    if (
                        want_status == ViolationStatus.OPEN
                        and vstatus != ViolationStatus.OPEN
                        and severity == Severity.CRITICAL
                    ):
                        opened_critical.append((p.name, name, f.evidence))
                else:
                    still_failing.append(vid)
            for (pid, rule_key), (p, f, exc_id) in desired.items():
                status_ = EXEMPTED if exc_id else OPEN
                # Plain values in VIOLATION_INSERT_COLUMNS order, no model instance: a sweep may open tens of
                # thousands, and they go to COPY as they are.
                to_create.append(
                    (
                        pid,
                        p.name,
                        instance_id,
                        rule_key,
                        f.rule[:300],
                        f.evidence,
                        p.severity,
                        status_,
                        now,
                        now,
                        None,
                        exc_id,
                    )
                )
                if status_ == OPEN and p.severity == Severity.CRITICAL:
                    opened_critical.append((p.name, name, f.evidence))

            # Standing of the instance.
            counts = defaultdict(int)
            for s in states.values():
                counts[s] += 1
            met, applicable = (
                counts[PolicyState.COMPLIANT],
                counts[PolicyState.COMPLIANT] + counts[PolicyState.NONCOMPLIANT],
            )
            score = round(100 * met / applicable, 1) if applicable else None
            values = {
                "met": met,
                "applicable": applicable,
                "exempt": counts[PolicyState.EXEMPT],
                "score": score,
                "stale": stale,
                "states": InstanceCompliance.encode_states(states),
            }
            old = standings.get(instance_id)
            if old is None:
                standing_new.append((instance_id, *(values[c] for c in STANDING_READ_COLS), now))
            elif any(old[k] != v for k, v in values.items()) or len(rows) <= REFRESH_LAST_SEEN_UP_TO:
                standing_changed.append(InstanceCompliance(instance_id=instance_id, evaluated_at=now, **values))
            old_states = InstanceCompliance.decode_states(old["states"]) if old else {}
            if full:
                for pid, s in states.items():
                    policy_absolute[int(pid)][s] += 1
            elif old_states != states:
                for pid, s in old_states.items():
                    policy_delta[int(pid)][s] -= 1
                for pid, s in states.items():
                    policy_delta[int(pid)][s] += 1
            if streaming is not None:
                streaming.put(Violation, to_create)
                streaming.put(InstanceCompliance, standing_new)
        if streaming is not None:
            streaming.put(Violation, to_create, force=True)
            streaming.put(InstanceCompliance, standing_new, force=True)
            streaming.finish()
    except BaseException:
        if streaming is not None:
            streaming.abort()
        raise

    # Writes: only what changed.
    if batched:
        _write_batched(
            now=now,
            new_releases=new_releases,
            closed_releases=closed_releases,
            to_create=to_create,
            to_update=to_update,
            to_resolve=to_resolve,
            still_failing=still_failing,
            standing_new=standing_new,
            standing_changed=standing_changed,
            policies=policies,
            policy_delta=policy_delta,
        )
    else:
        if new_releases:
            ReleaseRecord.objects.bulk_create(new_releases, batch_size=2000)
        for outcome, rec_ids in closed_releases.items():
            for chunk in _chunks(rec_ids):
                ReleaseRecord.objects.filter(pk__in=chunk).update(closed_at=now, outcome=outcome)
        # Conflicts are skipped: a concurrent evaluation of the same instance may have opened the same row.
        if streaming is None:
            bulk_insert_rows(Violation, VIOLATION_INSERT_COLUMNS, to_create)
        if to_update:
            Violation.objects.bulk_update(to_update, VIOLATION_UPDATE_FIELDS, batch_size=1000)
        for chunk in _chunks(to_resolve):
            Violation.objects.filter(pk__in=chunk, status__in=CURRENT_STATUSES).update(
                status=ViolationStatus.RESOLVED, resolved_at=now
            )
        if still_failing and len(rows) <= REFRESH_LAST_SEEN_UP_TO:
            Violation.objects.filter(pk__in=still_failing).update(last_seen_at=now)
        if streaming is None:
            bulk_insert_rows(InstanceCompliance, STANDING_INSERT_COLUMNS, standing_new)
        if standing_changed:
            InstanceCompliance.objects.bulk_update(standing_changed, STANDING_FIELDS, batch_size=1000)
        _store_policy_counts(policies, policy_absolute if full else None, policy_delta, now)
    if opened_critical:
        _notify_critical(opened_critical)
    return {
        "instances": len(rows),
        "opened": len(to_create),
        "updated": len(to_update),
        "resolved": len(to_resolve),
        "critical_opened": len(opened_critical),
    }


POLICY_COUNT_FIELDS = {
    PolicyState.COMPLIANT: "compliant",
    PolicyState.NONCOMPLIANT: "noncompliant",
    PolicyState.EXEMPT: "exempt",
    PolicyState.UNKNOWN: "unknown",
}
VIOLATION_UPDATE_FIELDS = ["evidence", "rule", "status", "exception", "last_seen_at"]
VIOLATION_INSERT_COLUMNS = _VIOLATION_FIELDS[1:]  # all but id
STANDING_INSERT_COLUMNS = ["instance_id", *STANDING_READ_COLS, "evaluated_at"]
OPEN, EXEMPTED = ViolationStatus.OPEN.value, ViolationStatus.EXEMPTED.value
STANDING_FIELDS = ["met", "applicable", "exempt", "score", "stale", "states", "evaluated_at"]


def _store_policy_counts(policies, absolute, delta, now) -> None:
    fields = POLICY_COUNT_FIELDS
    enabled = {p.id for p in policies}
    if absolute is not None:
        existing = {pc.pk: pc for pc in PolicyCompliance.objects.all()}
        new, changed = [], []
        for pid in enabled:
            values = {fields[s]: absolute.get(pid, {}).get(s, 0) for s in fields}
            pc = existing.get(pid)
            if pc is None:
                new.append(PolicyCompliance(policy_id=pid, **values))
            elif any(getattr(pc, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(pc, k, v)
                changed.append(pc)
        PolicyCompliance.objects.bulk_create(new, ignore_conflicts=True)
        PolicyCompliance.objects.bulk_update(changed, list(fields.values()))
        PolicyCompliance.objects.exclude(pk__in=enabled).delete()
        return
    statement = _policy_delta_sql(policies, delta, now)
    if statement is None:
        return
    sql, params, touched = statement
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        updated = cursor.rowcount
    if updated < len(touched):
        _create_missing_policy_counts(touched, delta)


def _policy_delta_sql(policies, delta, now) -> tuple[str, list, list[int]] | None:
    """One UPDATE moving every touched policy's counts by its delta (None: nothing moved), and the ids.

    On PostgreSQL the deltas travel as one JSON parameter, so the statement's text is the same every
    time (the driver's query cache holds it) however many policies moved.
    """
    enabled = {p.id for p in policies}
    touched = [pid for pid in delta if pid in enabled and any(delta[pid].values())]
    if not touched:
        return None
    table = PolicyCompliance._meta.db_table
    if connection.vendor != "postgresql":
        # field = field + CASE policy_id WHEN … THEN delta ELSE 0 END
        sets, params = ["updated = %s"], [now]
        for state, field in POLICY_COUNT_FIELDS.items():
            cases = [(pid, delta[pid][state]) for pid in touched if delta[pid].get(state)]
            if cases:
                whens = " ".join("WHEN %s THEN %s" for _ in cases)
                sets.append(f"{field} = {field} + CASE policy_id {whens} ELSE 0 END")
                params += [v for case in cases for v in case]
        marks = ", ".join(["%s"] * len(touched))
        sql = f"UPDATE {table} SET {', '.join(sets)} WHERE policy_id IN ({marks})"  # noqa: S608 - fixed names
        return sql, [*params, *touched], touched
    rows = [
        {"policy_id": pid, **{field: delta[pid].get(state, 0) for state, field in POLICY_COUNT_FIELDS.items()}}
        for pid in touched
    ]
    fields = POLICY_COUNT_FIELDS.values()
    sql = (
        f"UPDATE {table} AS pc SET updated = %s, "  # noqa: S608 - fixed names, values are parameters
        + ", ".join(f"{f} = pc.{f} + d.{f}" for f in fields)
        + " FROM jsonb_to_recordset(%s::jsonb) AS d(policy_id bigint, "
        + ", ".join(f"{f} integer" for f in fields)
        + ") WHERE pc.policy_id = d.policy_id"
    )
    return sql, [now, json.dumps(rows)], touched


def _create_missing_policy_counts(touched: list[int], delta) -> None:
    """Rows are created with the policy; a missing one starts from zero (the next sweep sets it exactly)."""
    missing = set(touched) - set(PolicyCompliance.objects.filter(pk__in=touched).values_list("pk", flat=True))
    PolicyCompliance.objects.bulk_create(
        [
            PolicyCompliance(policy_id=pid, **{POLICY_COUNT_FIELDS[st]: max(0, n) for st, n in delta[pid].items()})
            for pid in missing
        ],
        ignore_conflicts=True,
    )


def _json_value(value):
    if isinstance(value, (datetime, date_cls)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot go into a write batch")


class _WriteBatch:
    """Statements sent to PostgreSQL as one multi-statement query: one round trip, and (outside a
    transaction block) one implicit transaction, so either all of them apply or none.

    Values are adapted by each field, as the ORM would; identifiers come from model metadata. Rows to
    insert travel as one JSON parameter and id lists as one array parameter, so each statement's text
    depends only on its kind: the driver converts a batch it has seen before from its cache.
    """

    def __init__(self):
        self.statements: list[tuple[str, list]] = []

    def add(self, sql: str, params: list) -> int:
        self.statements.append((sql, params))
        return len(self.statements) - 1

    def insert(self, model, columns: list[str], rows: list[tuple], *, ignore_conflicts: bool = False) -> None:
        """INSERT rows of plain values (see bulk_insert_rows) given in `columns` (attnames)."""
        if not rows:
            return
        names = [model._meta.get_field(c).column for c in columns]
        cols = ", ".join(connection.ops.quote_name(n) for n in names)
        table = model._meta.db_table
        sql = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"  # noqa: S608
        if ignore_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        self.add(sql, [json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=_json_value)])

    def update(self, model, pks: list, values: dict, *, where: str = "", where_params=()) -> None:
        """UPDATE model SET values WHERE pk = ANY(pks) [AND where]."""
        if not pks:
            return
        fields = [model._meta.get_field(n) for n in values]
        sets = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
        pk_col = connection.ops.quote_name(model._meta.pk.column)
        sql = f"UPDATE {model._meta.db_table} SET {sets} WHERE {pk_col} = ANY(%s){where}"  # noqa: S608
        params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
        self.add(sql, [*params, list(pks), *where_params])

    def run(self, *, relaxed_commit: bool) -> list[int]:
        """Send everything; returns each statement's row count."""
        if not self.statements:
            return []
        prefix = "SET LOCAL synchronous_commit TO OFF; " if relaxed_commit else ""
        with connection.cursor() as cursor:
            cursor.execute(
                prefix + "; ".join(sql for sql, _ in self.statements), [p for _, ps in self.statements for p in ps]
            )
            counts = []
            if prefix:
                cursor.nextset()
            for i in range(len(self.statements)):
                if i:
                    cursor.nextset()
                counts.append(cursor.rowcount)
        return counts


def _write_batched(
    *,
    now,
    new_releases,
    closed_releases,
    to_create,
    to_update,
    to_resolve,
    still_failing,
    standing_new,
    standing_changed,
    policies,
    policy_delta,
) -> None:
    """An evaluation's writes in one round trip (a few instances: every list is short)."""
    batch = _WriteBatch()
    if new_releases:
        fields = _insert_fields(ReleaseRecord)
        batch.insert(ReleaseRecord, [f.attname for f in fields], [_prepared_row(r, fields) for r in new_releases])
    for outcome, rec_ids in closed_releases.items():
        batch.update(ReleaseRecord, rec_ids, {"closed_at": now, "outcome": outcome})
    # ON CONFLICT DO NOTHING: a concurrent evaluation of the same instance may have opened the same row.
    batch.insert(Violation, VIOLATION_INSERT_COLUMNS, to_create, ignore_conflicts=True)
    for v in to_update:
        batch.update(
            Violation, [v.pk], {f: getattr(v, Violation._meta.get_field(f).attname) for f in VIOLATION_UPDATE_FIELDS}
        )
    batch.update(
        Violation,
        to_resolve,
        {"status": ViolationStatus.RESOLVED, "resolved_at": now},
        where=" AND status = ANY(%s)",
        where_params=[list(CURRENT_STATUSES)],
    )
    batch.update(Violation, still_failing, {"last_seen_at": now})
    batch.insert(InstanceCompliance, STANDING_INSERT_COLUMNS, standing_new, ignore_conflicts=True)
    for row in standing_changed:
        batch.update(InstanceCompliance, [row.instance_id], {f: getattr(row, f) for f in STANDING_FIELDS})
    policy_counts = _policy_delta_sql(policies, policy_delta, now)
    counts_at = batch.add(*policy_counts[:2]) if policy_counts else None
    counts = batch.run(relaxed_commit=not connection.in_atomic_block)
    if counts_at is not None and counts[counts_at] < len(policy_counts[2]):
        _create_missing_policy_counts(policy_counts[2], policy_delta)


def _notify_critical(opened: list[tuple[str, str, str]]) -> None:
    """Once per opening: each newly opened critical violation is in exactly one notification."""
    url = reverse("governance:violation_list") + "?severity=critical&status=open"
    if len(opened) <= NOTIFY_INDIVIDUALLY_UP_TO:
        for policy_name, instance_name, evidence in opened:
            notify_admins(
                title=f"Critical violation on {instance_name}: {policy_name}",
                body=evidence,
                url=url,
                level=NotificationLevel.CRITICAL,
            )
        return
    lines = [f"{i}: {p} — {e}" for p, i, e in opened[:20]]
    more = f"\n… and {len(opened) - 20} more" if len(opened) > 20 else ""
    notify_admins(
        title=f"{len(opened)} critical violations opened",
        body="\n".join(lines) + more,
        url=url,
        level=NotificationLevel.CRITICAL,
    )


def evaluate_instance(*, instance_id: int, now=None) -> dict:
    """Incremental evaluation after a heartbeat changed one instance's state (or its groups/tags)."""
    return evaluate_instances(instance_ids=[instance_id], now=now)


def evaluate_fleet(*, now=None) -> dict:
    return evaluate_instances(instance_ids=None, now=now)


def evaluate_policy_scope(*, policy_id: int | None, previous_instance_ids: list[int] | None = None, now=None) -> dict:
    """Re-evaluate the instances a policy change concerns: its scope now, plus those it covered before."""
    ids = set(previous_instance_ids or ())
    policy = Policy.objects.filter(pk=policy_id).first() if policy_id else None
    if policy is not None:
        scope = policy.scope
        if scope.kind == ScopeKind.ALL:
            return evaluate_fleet(now=now)
        ids |= set(instances_in_scope(scope).values_list("pk", flat=True))
    if policy_id:
        current = Violation.objects.filter(policy_id=policy_id, status__in=CURRENT_STATUSES)
        ids |= set(current.values_list("instance_id", flat=True))
    if not ids:
        return {"instances": 0, "opened": 0, "updated": 0, "resolved": 0, "critical_opened": 0}
    return evaluate_instances(instance_ids=sorted(ids), now=now)


def _enqueue_scope_evaluation(policy_id: int | None, previous: list[int] | None) -> None:
    """After commit, re-evaluate a policy's scope plus `previous` instances; previous=None: the whole fleet."""
    from .tasks import evaluate_fleet_task, evaluate_policy_scope_task

    if previous is None:
        transaction.on_commit(lambda: evaluate_fleet_task.delay())
    else:
        transaction.on_commit(lambda: evaluate_policy_scope_task.delay(policy_id, previous))


def _scope_instance_ids(scope: Scope | None) -> list[int] | None:
    """The instances a scope covers now; None for the whole fleet (no list to carry around)."""
    if scope is None:
        return []
    if scope.kind == ScopeKind.ALL:
        return None
    return list(instances_in_scope(scope).values_list("pk", flat=True))


# --- Policies ---------------------------------------------------------------------------------


def _clean_rules(policy_type: str, rules) -> dict:
    try:
        return evaluators.validate_rules(policy_type, rules)
    except evaluators.RuleError as exc:
        raise ApplicationError(str(exc), field="rules") from exc


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
            f"Policy '{name}' conflicts with another policy: " + " ".join(messages), code="policy_conflict"
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
    *, actor, name: str, policy_type: str, rules: dict, scope: Scope, description: str = "", enabled: bool = True
) -> Policy:
    """Create a policy; its scope is evaluated after commit."""
    name = _check_name(name)
    clean = _clean_rules(policy_type, rules)
    if enabled:
        _check_conflicts(name=name, policy_type=policy_type, rules=clean, scope=scope)
    policy = Policy.objects.create(
        name=name,
        description=description,
        policy_type=policy_type,
        rules=clean,
        enabled=enabled,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    scope_apply(policy, scope)
    policy.save()  # bump `updated` after the scope is stored: evaluation caches key on it
    PolicyCompliance.objects.create(policy=policy)
    audit_log(
        actor=actor,
        action="policy.create",
        obj=policy,
        details={"type": policy_type, "rules": clean, "enabled": enabled},
    )
    _enqueue_scope_evaluation(policy.pk, [])
    return policy


@transaction.atomic
def policy_update(
    *, actor, policy: Policy, name: str, rules: dict, scope: Scope, description: str = "", enabled: bool | None = None
) -> Policy:
    """Change a policy's name, rules, scope (its type is fixed). Old and new scope are re-evaluated."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    name = _check_name(name, exclude_id=policy.pk)
    clean = _clean_rules(policy.policy_type, rules)
    enabled = policy.enabled if enabled is None else enabled
    if enabled:
        _check_conflicts(name=name, policy_type=policy.policy_type, rules=clean, scope=scope, exclude_id=policy.pk)
    previous = _scope_instance_ids(policy.scope)
    before = {"name": policy.name, "rules": policy.rules, "scope": policy.scope_label, "enabled": policy.enabled}
    policy.name, policy.description, policy.rules, policy.enabled = name, description, clean, enabled
    policy.save()
    scope_apply(policy, scope)
    policy.save()
    audit_log(
        actor=actor, action="policy.update", obj=policy, details={"before": before, "rules": clean, "enabled": enabled}
    )
    _enqueue_scope_evaluation(policy.pk, previous)
    return policy


@transaction.atomic
def policy_set_enabled(*, actor, policy: Policy, enabled: bool) -> Policy:
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if policy.enabled == enabled:
        return policy
    if enabled:
        _check_conflicts(
            name=policy.name,
            policy_type=policy.policy_type,
            rules=policy.rules,
            scope=policy.scope,
            exclude_id=policy.pk,
        )
    policy.enabled = enabled
    policy.save()
    audit_log(actor=actor, action="policy.enable" if enabled else "policy.disable", obj=policy)
    _enqueue_scope_evaluation(policy.pk, [])
    return policy


def policy_enable(*, actor, policy: Policy) -> Policy:
    return policy_set_enabled(actor=actor, policy=policy, enabled=True)


def policy_disable(*, actor, policy: Policy) -> Policy:
    return policy_set_enabled(actor=actor, policy=policy, enabled=False)


@transaction.atomic
def policy_delete(*, actor, policy: Policy) -> None:
    """Delete a policy. Its current violations are resolved (kept as history); its scope is re-scored."""
    previous = _scope_instance_ids(policy.scope)
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
    policy.delete()
    _enqueue_scope_evaluation(None, None if previous is None else sorted(set(previous) | affected))


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


# --- Exceptions (waivers) ---------------------------------------------------------------------


@transaction.atomic
def exception_create(
    *, actor, policy: Policy, scope: Scope, justification: str, expires_at, rule_key: str = "", now=None
) -> PolicyException:
    """Exempt part of the fleet from a policy (or one of its rules) until `expires_at`. Audit-logged."""
    now = now or timezone.now()
    justification = (justification or "").strip()
    if len(justification) < 10:
        raise ApplicationError("Explain why the exception is needed (at least 10 characters).", field="justification")
    if expires_at is None:
        raise ApplicationError("An exception needs an expiry date.", field="expires_at")
    if expires_at <= now:
        raise ApplicationError("The expiry must be in the future.", field="expires_at")
    if rule_key:
        known = dict(evaluators.rule_keys(policy.policy_type, policy.rules))
        if rule_key not in known:
            raise ApplicationError(
                f"Policy '{policy.name}' has no rule '{rule_key}'; its rules are: {', '.join(known)}.",
                field="rule_key",
            )
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
    _enqueue_scope_evaluation(None, _scope_instance_ids(scope))
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
    _enqueue_scope_evaluation(None, _scope_instance_ids(exception.scope))
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
        ids = _scope_instance_ids(exception.scope)
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


def evaluate_time_based(*, now=None) -> dict:
    """Beat: expire exceptions, then sweep the fleet (update deadlines passing, instances going stale)."""
    now = now or timezone.now()
    exceptions_expire(now=now, evaluate=False)
    return evaluate_fleet(now=now)


# --- Snapshots --------------------------------------------------------------------------------


@transaction.atomic
def compliance_snapshot_take(*, day: date_cls | None = None) -> dict:
    """Record today's fleet, group and policy scores, and every instance's standing. Re-running replaces the day."""
    day = day or timezone.localdate()
    ComplianceSnapshot.objects.filter(date=day).delete()
    InstanceSnapshot.objects.filter(date=day).delete()
    scored = InstanceCompliance.objects.filter(score__isnull=False)
    fleet = scored.aggregate(avg=Avg("score"), n=Count("pk"))
    rows = [
        ComplianceSnapshot(
            date=day, kind=SnapshotKind.FLEET, label="Fleet", score=_round(fleet["avg"]), instances=fleet["n"]
        )
    ]
    for group_id, name, avg, n in (
        scored.filter(instance__groups__isnull=False)
        .values_list("instance__groups", "instance__groups__name")
        .annotate(avg=Avg("score"), n=Count("pk"))
        .order_by()
    ):
        rows.append(
            ComplianceSnapshot(
                date=day, kind=SnapshotKind.GROUP, group_id=group_id, label=name, score=_round(avg), instances=n
            )
        )
    for pc in PolicyCompliance.objects.select_related("policy"):
        rows.append(
            ComplianceSnapshot(
                date=day,
                kind=SnapshotKind.POLICY,
                policy_id=pc.policy_id,
                label=pc.policy.name,
                score=pc.score,
                instances=pc.applicable,
            )
        )
    ComplianceSnapshot.objects.bulk_create(rows)
    per_instance = [
        InstanceSnapshot(
            date=day,
            instance_id=c["instance_id"],
            score=c["score"],
            met=c["met"],
            applicable=c["applicable"],
            stale=c["stale"],
            failing_policy_ids=sorted(
                int(pid)
                for pid, s in InstanceCompliance.decode_states(c["states"]).items()
                if s == PolicyState.NONCOMPLIANT
            ),
        )
        for c in InstanceCompliance.objects.values("instance_id", "score", "met", "applicable", "stale", "states")
    ]
    InstanceSnapshot.objects.bulk_create(per_instance, batch_size=2000)
    return {"date": day.isoformat(), "fleet": rows[0].score, "groups": len(rows) - 1, "instances": len(per_instance)}


def _round(value):
    return round(value, 1) if value is not None else None


def policy_get(pk: int) -> Policy:
    try:
        return Policy.objects.get(pk=pk)
    except Policy.DoesNotExist:
        raise NotFoundError("No such policy.")
