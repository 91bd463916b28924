"""The per-instance lock: what is derived from an instance's state (governance's evaluation) is
rewritten by one transaction at a time, and never while the instance is being deleted.

A transaction-level advisory lock per instance on PostgreSQL, released at COMMIT or ROLLBACK, taken
in ascending id order so that two holders of several never deadlock. On SQLite every transaction is
`BEGIN IMMEDIATE` (settings: transaction_mode), one writer at a time, so this is a no-op there.
"""

from django.db import connection

# Advisory lock keys (bigint): a prefix in the high bits keeps clear of other users; + instance id.
INSTANCE_KEYS = 7301 << 40


def lock_instances(ids: list[int]) -> None:
    """Hold every instance in `ids` until the end of the current transaction."""
    if connection.vendor != "postgresql" or not ids:
        return
    assert connection.in_atomic_block, "lock_instances needs a transaction: the locks end with it"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s + i)) FROM (SELECT unnest(%s::bigint[]) AS i ORDER BY 1) AS ids",
            [INSTANCE_KEYS, sorted(ids)],
        )
