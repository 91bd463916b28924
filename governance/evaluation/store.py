"""Reads one chunk of instances for `diff` and applies a batch of its changes; recounts policies.

Every function here runs inside the caller's transaction, after `locks.lock_instances` on the
chunk: what is read is what is overwritten (see locks).
"""

from collections import Counter, defaultdict

from django.db import connection
from django.db.models import Case, F, JSONField, Q, When

from fleet.app_index import AppIndex
from fleet.models import Instance

from ..choices import CURRENT_STATUSES, PolicyState, ViolationStatus
from ..models import InstanceCompliance, PolicyCompliance, ReleaseRecord, Violation
from .diff import Changes, InstanceState, OpenRelease, OpenViolation, Standing

# `full_apps`: the apps JSON only where there is no app index (see read); the index comes last.
STATE_COLUMNS = ("id", "name", "status", "last_seen_at", "os_version", "full_apps", "settings", "updates", "apps_text")
STANDING_COLUMNS = ("met", "applicable", "exempt", "score", "stale", "states", "invalid_reason")
COUNT_FIELDS = {
    PolicyState.COMPLIANT: "compliant",
    PolicyState.NONCOMPLIANT: "noncompliant",
    PolicyState.EXEMPT: "exempt",
    PolicyState.UNKNOWN: "unknown",
}
# From this many rows, new violations go through COPY on PostgreSQL (see insert_violations).
COPY_FROM = 100
# Instance states parsed at a time while a chunk is read (see read).
STREAM = 50


def read(ids: list[int]):
    """(InstanceState, [OpenRelease], [OpenViolation], Standing | None) of each instance in `ids` that
    exists, lazily: iterate inside the transaction that holds the instances' locks.

    `ids` is sorted; a sweep's chunk is dense, so every read selects the id range and keeps the ids
    asked for: a range costs the same whatever its length, where `IN (…1,000 ids…)` costs more to
    build and send than the rows. Sparse ids (a batch of heartbeats) are selected by `IN`."""
    wanted = set(ids)
    lo, hi = ids[0], ids[-1]
    dense = hi - lo < 2 * len(ids)

    def rows(queryset, field, *columns):
        where = {f"{field}__gte": lo, f"{field}__lte": hi} if dense else {f"{field}__in": ids}
        qs = queryset.filter(**where).values_list(field, *columns)
        return (row for row in qs if row[0] in wanted)

    groups, tags = defaultdict(set), defaultdict(set)
    for iid, group_id in rows(Instance.groups.through.objects, "instance_id", "group_id"):
        groups[iid].add(group_id)
    for iid, key, value in rows(Instance.tags.through.objects, "instance_id", "tag__key", "tag__value"):
        tags[iid].add(f"{key}={value}")
    releases, violations, standings = defaultdict(list), defaultdict(list), {}
    open_releases = ReleaseRecord.objects.filter(closed_at__isnull=True)
    for iid, *rest in rows(open_releases, "instance_id", "id", "kind", "name", "version", "released_at"):
        releases[iid].append(OpenRelease(*rest))
    current = Violation.objects.filter(status__in=CURRENT_STATUSES)
    columns = ("id", "policy_id", "rule_key", "status", "evidence", "exception_id", "severity")
    for iid, *rest in rows(current, "instance_id", *columns):
        violations[iid].append(OpenViolation(*rest))
    for iid, *rest in rows(InstanceCompliance.objects, "instance_id", *STANDING_COLUMNS):
        standings[iid] = Standing(*rest)
    # The states stream (a server-side cursor on PostgreSQL): a chunk of servers reporting 3,000
    # packages each is over a gigabyte once parsed (1.45 GiB peak RSS), so only STREAM of them are in
    # memory at a time.
    # An instance with an app index (fleet.app_index) sends that instead of its apps JSON.
    full_apps = Case(When(apps_text__isnull=True, then=F("apps")), default=None, output_field=JSONField())
    states = Instance.objects.order_by("pk").annotate(full_apps=full_apps)
    where = {"id__gte": lo, "id__lte": hi} if dense else {"id__in": ids}
    for row in states.filter(**where).values_list(*STATE_COLUMNS).iterator(chunk_size=STREAM):
        iid = row[0]
        if iid in wanted:
            state = InstanceState(*state_row(row), group_ids=frozenset(groups[iid]), tags=frozenset(tags[iid]))
            yield state, releases[iid], violations[iid], standings.get(iid)


def state_row(row) -> tuple:
    """STATE_COLUMNS → InstanceState's fields: the app index, where there is one, stands for the apps."""
    *fields, apps_text = row
    if apps_text is not None:
        fields[5] = AppIndex(apps_text)
    return tuple(fields)


def apply(batch: list[Changes], now, *, refresh: bool) -> dict:
    """Write a batch of changes: only what changed, unless `refresh` (a small evaluation), where every
    standing's evaluated_at and every still-failing violation's last_seen_at move to `now` as well."""
    _store_releases(batch, now)
    insert_violations([(c.instance_id, v) for c in batch for v in c.create], now)
    updates = [
        Violation(
            pk=u.id, evidence=u.evidence, rule=u.rule, status=u.status, exception_id=u.exception_id, last_seen_at=now
        )
        for c in batch
        for u in c.update
    ]
    Violation.objects.bulk_update(updates, ["evidence", "rule", "status", "exception", "last_seen_at"], batch_size=500)
    resolve = [vid for c in batch for vid in c.resolve]
    for chunk in _chunks(resolve):
        Violation.objects.filter(pk__in=chunk, status__in=CURRENT_STATUSES).update(
            status=ViolationStatus.RESOLVED, resolved_at=now
        )
    if refresh:
        for chunk in _chunks([vid for c in batch for vid in c.unchanged]):
            Violation.objects.filter(pk__in=chunk).update(last_seen_at=now)
    # A first standing is inserted: none can exist, as for new violations (see insert_rows).
    first = [
        (c.instance_id, *(getattr(c.standing, f) for f in STANDING_COLUMNS), now)
        for c in batch
        if c.old_standing is None
    ]
    insert_rows(InstanceCompliance, ("instance_id", *STANDING_COLUMNS, "evaluated_at"), first)
    standings = [
        InstanceCompliance(instance_id=c.instance_id, evaluated_at=now, **c.standing.__dict__)
        for c in batch
        if c.old_standing is not None and (refresh or c.standing != c.old_standing)
    ]
    InstanceCompliance.objects.bulk_create(
        standings,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["instance"],
        update_fields=[*STANDING_COLUMNS, "evaluated_at"],
    )
    return {
        "instances": len(batch),
        "opened": sum(len(c.create) for c in batch),
        "updated": len(updates),
        "resolved": len(resolve),
        "critical_opened": sum(len(c.opened_critical) for c in batch),
        "invalid": sum(bool(c.invalid) for c in batch),
    }


def _store_releases(batch: list[Changes], now) -> None:
    """Open records are unique per instance and version (constraint): a conflicting insert is skipped."""
    new = [
        ReleaseRecord(
            instance_id=c.instance_id,
            kind=r.kind,
            name=r.name,
            version=r.version,
            released_at=r.released_at,
            first_seen_at=now,
        )
        for c in batch
        for r in c.new_releases
    ]
    ReleaseRecord.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    closed = defaultdict(list)
    for c in batch:
        for rec_id, outcome in c.closed_releases.items():
            closed[outcome].append(rec_id)
    for outcome, ids in closed.items():
        for chunk in _chunks(ids):
            ReleaseRecord.objects.filter(pk__in=chunk, closed_at__isnull=True).update(closed_at=now, outcome=outcome)


VIOLATION_COLUMNS = (
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
    "exception_id",
)


def insert_violations(rows: list, now) -> None:
    """Insert new violations [(instance_id, NewViolation)] (see insert_rows)."""
    values = [
        (
            v.policy_id,
            v.policy_name,
            iid,
            v.rule_key,
            v.rule,
            v.evidence,
            v.severity,
            v.status,
            now,
            now,
            v.exception_id,
        )
        for iid, v in rows
    ]
    insert_rows(Violation, VIOLATION_COLUMNS, values)


def insert_rows(model, columns: tuple, values: list[tuple]) -> None:
    """Insert rows of `model` (tuples of the `columns`, field names) for instances of this evaluation.

    No conflict is possible: the instances are locked and their current violations and standing were
    read after the lock; should one happen anyway, the chunk fails and is retried instance by
    instance (see run).

    What COPY buys: a cold sweep of 10,000 × 50 opens about 30,000 violations and 10,000 standings;
    building a model instance per row for bulk_create's INSERTs costs several times COPY of plain
    tuples straight into the table (bench/evaluation.py prints both), and it is this process's time,
    on which a sweep waits (see run._each_chunk). Below COPY_FROM rows, and on SQLite, bulk_create.
    """
    if connection.vendor != "postgresql" or len(values) < COPY_FROM:
        objs = [model(**dict(zip(columns, row, strict=True))) for row in values]
        model.objects.bulk_create(objs, batch_size=1000)
        return
    cols = ", ".join(connection.ops.quote_name(model._meta.get_field(c).column) for c in columns)
    # Identifiers come from model metadata; values travel through COPY, never in the SQL text.
    sql = f"COPY {model._meta.db_table} ({cols}) FROM STDIN"
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        for row in values:
            copy.write_row(row)


def recount_policies(policy_ids=None, *, now) -> None:
    """Recount policies (None: all; else those given and those due) from the standings they count,
    under their row locks.

    The row locks make recounts of one policy take turns, and the count is a fresh statement after the
    lock, so it sees every standing committed before; an evaluation still running marks the policy
    due again (mark_recount_due waits for our lock) and so triggers the next recount.
    """
    from ..models import Policy

    policies = Policy.objects.all() if policy_ids is None else Policy.objects.filter(pk__in=policy_ids)
    PolicyCompliance.objects.bulk_create(
        [PolicyCompliance(policy_id=pk) for pk in policies.values_list("pk", flat=True)], ignore_conflicts=True
    )
    locked = PolicyCompliance.objects.select_for_update().order_by("pk")
    if policy_ids is not None:
        locked = locked.filter(Q(pk__in=policy_ids) | Q(recount_due=True))
    ids = list(locked.values_list("pk", flat=True))
    if not ids:
        return
    counts = _count_states()
    rows = [
        PolicyCompliance(
            policy_id=pk,
            updated=now,
            recount_due=False,
            **{f: counts.get((str(pk), s), 0) for s, f in COUNT_FIELDS.items()},
        )
        for pk in ids
    ]
    PolicyCompliance.objects.bulk_update(rows, [*COUNT_FIELDS.values(), "recount_due", "updated"], batch_size=500)


def mark_recount_due(policy_ids) -> bool:
    """A heartbeat's evaluation: the policies' counts are recounted shortly after, together (one pass
    over the standings serves every policy and every heartbeat meanwhile). True: a recount must be
    scheduled (none was pending).

    The rows are locked until our commit, also those already due: a recount that started meanwhile
    waits for us and so counts our standings. (Only updating the rows not yet due left a gap: a
    recount could clear the flag and count between our finding it set and our commit.)"""
    rows = PolicyCompliance.objects.select_for_update().filter(pk__in=policy_ids).order_by("pk")
    not_due = [pk for pk, due in rows.values_list("pk", "recount_due") if not due]
    return bool(not_due) and PolicyCompliance.objects.filter(pk__in=not_due).update(recount_due=True) > 0


def _count_states() -> dict:
    """{(policy key, state): instances}, reading every standing once.

    One pass over 10,000 standings takes about 0.1 s of Python; the database's LIKE per policy and
    state took 30 ms for each policy (measured), so the pass is cheaper from two policies on. Counted
    with Counter over the split text of 5,000 standings at a time (C speed), then split into policy
    and state once per distinct item: 125 → 70 ms at 10,000 × 50, and a heartbeat's recount runs in
    the worker that evaluates the next heartbeat (bench/evaluation_worker.py)."""
    items: Counter = Counter()
    texts = InstanceCompliance.objects.exclude(states="").values_list("states", flat=True)
    part = []
    for text in texts.iterator(chunk_size=5000):
        part.append(text)
        if len(part) == 5000:
            items.update(",".join(part).split(","))
            part = []
    if part:
        items.update(",".join(part).split(","))
    counts = defaultdict(int)
    for item, n in items.items():
        counts[(item[:-1], item[-1])] += n
    return counts


def _chunks(items: list, size: int = 1000):
    for i in range(0, len(items), size):
        yield items[i : i + size]
