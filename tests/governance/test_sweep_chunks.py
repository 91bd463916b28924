"""A sweep evaluates its chunks overlapping, each on a connection of its own (governance.evaluation.run
._each_chunk, PostgreSQL outside a transaction): it stores exactly what evaluating one chunk after the
other stores, recounts the policies after every chunk committed, and leaves no connection behind."""

import threading

import pytest
from django.db import connection, transaction

from governance import services
from governance.evaluation import run
from governance.models import InstanceCompliance, PolicyCompliance, Violation
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db(transaction=True)


def outcome():
    violations = sorted(
        Violation.objects.values_list("instance__name", "policy_name", "rule_key", "evidence", "status")
    )
    standings = sorted(InstanceCompliance.objects.values_list("instance__name", "met", "applicable", "states"))
    counts = sorted(PolicyCompliance.objects.values_list("policy__name", "compliant", "noncompliant", "unknown"))
    return violations, standings, counts


def clear():
    Violation.objects.all().delete()
    InstanceCompliance.objects.all().delete()
    PolicyCompliance.objects.all().delete()


def connections_open() -> int | None:
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_overlapping_chunks_store_what_one_chunk_after_the_other_stores(make_instance, monkeypatch):
    for i in range(9):
        make_instance(
            apps=[("monitoring-agent", "2.5" if i % 3 else "1.0"), ("log-collector", "1.2", i % 4 != 0)],
            settings={"ssh.password_auth": i % 2 == 0},
        )
    make_policy(
        name="Agents",
        rules={
            "apps": [{"name": "monitoring-agent", "min_version": "2.0"}, {"name": "log-collector", "running": True}]
        },
    )
    make_policy(name="SSH", policy_type="baseline", rules={"settings": {"ssh.password_auth": False}})
    monkeypatch.setattr(run, "CHUNK", 2)  # 5 chunks
    threads = set()
    evaluate_chunk = run._evaluate_chunk

    def spy(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return evaluate_chunk(*args, **kwargs)

    monkeypatch.setattr(run, "_evaluate_chunk", spy)
    clear()
    before = connections_open()
    overlapped = services.evaluate_fleet()
    stored = outcome()
    assert connections_open() == before
    if connection.vendor == "postgresql":
        assert all(name.startswith("evaluate-chunk") for name in threads), threads
    clear()
    threads.clear()
    with transaction.atomic():  # inside a transaction: one chunk after the other, on this connection
        one_by_one = services.evaluate_fleet()
    assert threads == {threading.current_thread().name}
    assert overlapped == one_by_one and stored == outcome()
    # agent too old, collector stopped, SSH on
    assert overlapped["instances"] == 9 and overlapped["opened"] == 3 + 3 + 5
