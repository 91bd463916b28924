"""The same evaluation behaviour on the path a heartbeat takes in production.

Outside a transaction block on PostgreSQL, evaluating a few instances sends all reads in one
multi-statement query and all writes in another (services._write_batched). Every test of
test_evaluation.py runs again here as a transactional test, so that path is the one exercised; the
tests below it pin what is particular to it.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance import services
from governance.models import InstanceCompliance, PolicyCompliance, Violation
from tests.governance import test_evaluation
from tests.governance.conftest import make_policy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres_required")]

# About the trigger, not the evaluation: it captures on-commit callbacks, which only a test's wrapping
# transaction holds back.
NOT_REPEATED = {"test_the_heartbeat_signal_enqueues_the_evaluation_on_commit"}
for _name, _test in vars(test_evaluation).items():
    if _name.startswith("test_") and callable(_test) and _name not in NOT_REPEATED:
        globals()[_name] = _test


def break_and_fix(instance, apps):
    instance.apps = [{"name": n, "version": v, "running": True} for n, v in apps]
    instance.save(update_fields=["apps"])
    return services.evaluate_instance(instance_id=instance.pk)


def test_a_heartbeats_evaluation_is_one_read_and_one_write(make_instance):
    web = make_instance(apps=[("monitoring-agent", "1.0")])
    make_policy()
    services.evaluate_instance(instance_id=web.pk)  # policies compiled and cached
    web.apps = []
    web.save(update_fields=["apps"])
    with CaptureQueriesContext(connection) as queries:
        result = services.evaluate_instance(instance_id=web.pk)
    assert result["opened"] == 1
    assert len(queries.captured_queries) == 2, [q["sql"][:80] for q in queries.captured_queries]
    assert Violation.objects.get(instance=web).evidence == "monitoring-agent missing"


def test_the_batched_writes_move_counts_and_standing_like_a_sweep(make_instance):
    web, db = make_instance(apps=[("monitoring-agent", "1.0")]), make_instance(apps=[])
    policy = make_policy()
    assert (
        PolicyCompliance.objects.get(pk=policy.pk).compliant,
        PolicyCompliance.objects.get(pk=policy.pk).noncompliant,
    ) == (1, 1)

    break_and_fix(web, [])
    counts = PolicyCompliance.objects.get(pk=policy.pk)
    assert (counts.compliant, counts.noncompliant) == (0, 2)
    assert InstanceCompliance.objects.get(pk=web.pk).score == 0

    break_and_fix(web, [("monitoring-agent", "1.0")])
    break_and_fix(db, [("monitoring-agent", "1.0")])
    counts = PolicyCompliance.objects.get(pk=policy.pk)
    assert (counts.compliant, counts.noncompliant) == (2, 0)
    # A full sweep recounts from scratch and agrees with what the increments left.
    services.evaluate_fleet()
    again = PolicyCompliance.objects.get(pk=policy.pk)
    assert (again.compliant, again.noncompliant, again.exempt, again.unknown) == (2, 0, 0, 0)
    assert sorted(Violation.objects.values_list("status", flat=True)) == ["resolved", "resolved"]


def test_a_failing_write_batch_applies_nothing(make_instance, monkeypatch):
    web = make_instance(apps=[("monitoring-agent", "1.0")])
    policy = make_policy()
    before = (
        list(Violation.objects.values_list("pk", "status")),
        InstanceCompliance.objects.get(pk=web.pk).score,
        PolicyCompliance.objects.get(pk=policy.pk).compliant,
    )
    real_run = services._WriteBatch.run

    def run_then_fail(self, *, relaxed_commit):
        # The last write fails after every other one was sent.
        self.add("UPDATE governance_policycompliance SET compliant = compliant / 0", [])
        return real_run(self, relaxed_commit=relaxed_commit)

    monkeypatch.setattr(services._WriteBatch, "run", run_then_fail)
    web.apps = []
    web.save(update_fields=["apps"])
    with pytest.raises(Exception, match="division by zero"):
        services.evaluate_instance(instance_id=web.pk)
    after = (
        list(Violation.objects.values_list("pk", "status")),
        InstanceCompliance.objects.get(pk=web.pk).score,
        PolicyCompliance.objects.get(pk=policy.pk).compliant,
    )
    assert after == before


def test_the_relaxed_commit_ends_with_the_evaluation(make_instance):
    web = make_instance(apps=[])
    make_policy()
    break_and_fix(web, [("monitoring-agent", "1.0")])
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_precompiled_reads_return_what_the_querysets_return(make_instance):
    instances = [make_instance(apps=[("monitoring-agent", "1.0")]) for _ in range(3)]
    make_policy()
    for ids in ([instances[0].pk], [i.pk for i in instances]):
        for build in (
            services._instances_read,
            services._instances_with_memberships_read,
            services._releases_read,
            services._violations_read,
        ):
            [cached] = services._read_many([services._precompiled(build, ids)])
            assert cached == list(build(ids)), build.__name__


# --- A large sweep streams its new rows to the database from a helper thread -------------------


def _outcome():
    return (
        sorted(Violation.objects.values_list("policy_id", "instance_id", "rule_key", "evidence", "status")),
        sorted(InstanceCompliance.objects.values_list("instance_id", "met", "applicable", "score", "states")),
        sorted(PolicyCompliance.objects.values_list("policy_id", "compliant", "noncompliant", "exempt", "unknown")),
    )


def _large_fleet(make_instance, n):
    from fleet.models import Instance

    make_policy()
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnet*"}]})
    template = make_instance(apps=[])
    Instance.objects.bulk_create(
        [
            Instance(
                name=f"bulk-{i:04d}",
                status=template.status,
                last_seen_at=template.last_seen_at,
                os_version="24.04",
                apps=(
                    ([{"name": "monitoring-agent", "version": "1.0", "running": True}] if i % 3 else [])
                    + ([{"name": "telnetd", "version": "0.1", "running": True}] if i % 7 == 0 else [])
                ),
            )
            for i in range(n)
        ]
    )


def test_a_large_sweep_streams_its_rows_and_stores_what_a_plain_sweep_stores(make_instance, monkeypatch):
    _large_fleet(make_instance, services.COPY_THRESHOLD + 100)
    monkeypatch.setattr(services, "COPY_THRESHOLD", 10**9)  # no streaming: the reference outcome
    services.evaluate_fleet()
    reference = _outcome()
    Violation.objects.all().delete()
    InstanceCompliance.objects.all().delete()
    PolicyCompliance.objects.all().delete()
    monkeypatch.undo()

    streamed = []
    real_init = services._BackgroundCopy.__init__
    monkeypatch.setattr(services._BackgroundCopy, "__init__", lambda self: streamed.append(self) or real_init(self))
    result = services.evaluate_fleet()
    assert streamed, "the sweep did not stream"
    assert result["opened"] == len(reference[0]) > 100
    assert _outcome() == reference


def test_a_failure_in_the_streaming_thread_fails_the_sweep_and_writes_nothing(make_instance, monkeypatch):
    _large_fleet(make_instance, services.COPY_THRESHOLD + 100)
    Violation.objects.all().delete()
    InstanceCompliance.objects.all().delete()
    real_init = services._BackgroundCopy.__init__

    def broken(self):
        real_init(self)
        copy_sql, _move = self.sql[Violation]
        self.sql[Violation] = (copy_sql, "SELECT 1 / 0")

    monkeypatch.setattr(services._BackgroundCopy, "__init__", broken)
    with pytest.raises(Exception, match="division by zero"):
        services.evaluate_fleet()
    assert not Violation.objects.exists()
    assert not InstanceCompliance.objects.exists()
