"""What serialises evaluation (one code path on both databases; only the primitive differs).

- Evaluations of one instance never interleave: `lock_instances(ids)` takes a transaction-level
  advisory lock per instance on PostgreSQL, in ascending id order (so two evaluations never
  deadlock), released at COMMIT or ROLLBACK. On SQLite every transaction is `BEGIN IMMEDIATE`
  (settings: transaction_mode), so there is one writer at a time and the call is a no-op. Whatever
  an evaluation reads after the lock is what it overwrites: a stale sweep cannot undo a newer
  heartbeat evaluation, which either finished before (and is read) or waits.
- Deleting an instance (fleet.services.instance_delete) takes the same instance lock
  (fleet.locks), so an evaluation never writes rows for an instance that is gone: it either
  finished before the delete collected the instance's rows, or it waits and then reads nothing.
- Deleting a policy waits for running evaluations, and evaluations starting meanwhile wait for the
  delete: `lock_policies(exclusive=...)`, one advisory lock taken shared by every evaluation and
  exclusively by `policy_delete`, so an evaluation never inserts a row for a policy that is gone.
- Policy counts are recounted under `PolicyCompliance` row locks (see store.recount_policies).
"""

from django.db import connection

from fleet import locks as fleet_locks

# Advisory lock keys (bigint): a governance prefix in the high bits keeps clear of other users.
POLICIES_KEY = 7302 << 40
INSTANCE_KEYS = fleet_locks.INSTANCE_KEYS  # + instance id


def lock_policies(*, exclusive: bool = False) -> None:
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [POLICIES_KEY])


def lock_instances(ids: list[int]) -> None:
    """Hold every instance in `ids` (and the policies, shared) until the end of the current transaction.

    A sweep locks one chunk per transaction: each lock is an entry in PostgreSQL's shared lock table
    (max_locks_per_transaction × max_connections, 6,400 by default), so chunks stay well below that."""
    if connection.vendor != "postgresql" or not ids:
        return
    # The policies' shared lock first, as everywhere: a waiting policy_delete then holds nothing an
    # evaluation needs.
    lock_policies()
    fleet_locks.lock_instances(ids)
