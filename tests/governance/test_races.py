"""Issue #12: evaluation under real concurrency on PostgreSQL. Threads with their own connections race
a sweep (in small chunks, so it spans many transactions) against heartbeat evaluations, a second
worker, policy changes and a waiver expiring; afterwards counts, scores and violation rows must
equal what a quiet re-evaluation produces."""

import random
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.signals import post_delete
from django.utils import timezone

from fleet import services as fleet_services
from fleet.models import Instance
from fleet.scopes import Scope
from governance import services
from governance.evaluation import run, store
from governance.models import InstanceCompliance, PendingEvaluation, Policy, PolicyCompliance, ReleaseRecord, Violation
from tests.governance.conftest import make_policy

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FLEET = 40


@pytest.fixture
def fleet(postgres_required, make_instance, monkeypatch):
    monkeypatch.setattr(run, "CHUNK", 5)  # a sweep is 8 transactions: room for others in between
    read = store.read

    def slow_read(ids):  # widen the window between an evaluation's read and its writes
        rows = list(read(ids))
        time.sleep(0.01)
        return rows

    monkeypatch.setattr(store, "read", slow_read)
    instances = [
        make_instance(
            apps=[("monitoring-agent", "1")] if i % 3 else [("telnetd", "0.1")],
            settings={"ssh.password_auth": bool(i % 4 == 0)},
        )
        for i in range(FLEET)
    ]
    policies = [
        make_policy(),
        make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnet*"}]}),
        make_policy(name="SSH keys", policy_type="baseline", rules={"settings": {"ssh.password_auth": False}}),
    ]
    return instances, policies


def snapshot() -> dict:
    return {
        "counts": sorted(
            PolicyCompliance.objects.values_list("policy_id", "compliant", "noncompliant", "exempt", "unknown")
        ),
        "standings": sorted(
            InstanceCompliance.objects.values_list(
                "instance_id", "met", "applicable", "exempt", "score", "stale", "states"
            )
        ),
        "violations": sorted(
            Violation.objects.exclude(status="resolved").values_list(
                "policy_id", "instance_id", "rule_key", "status", "evidence", "exception_id"
            )
        ),
    }


def assert_equals_quiet_reevaluation():
    raced = snapshot()
    services.evaluate_fleet()
    quiet = snapshot()
    assert raced["violations"] == quiet["violations"]
    assert raced["standings"] == quiet["standings"]
    assert raced["counts"] == quiet["counts"]
    # The recount agrees with the standings it counts.
    assert sum(c[2] for c in quiet["counts"]) == sum(s[2] - s[1] for s in quiet["standings"])


def race(*targets, seconds=None):
    """Run each target in its own thread (own connection); re-raise the first error."""
    errors = []

    def wrap(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    if errors:
        raise errors[0]


def toggle_agent(instance_id: int, rng: random.Random) -> None:
    apps = [{"name": "monitoring-agent", "version": "1", "running": True}] if rng.random() < 0.5 else []
    Instance.objects.filter(pk=instance_id).update(apps=apps)


def sweeps(n):
    def go():
        for _ in range(n):
            services.evaluate_fleet()

    return go


def test_sweeps_racing_heartbeat_evaluations_of_the_same_instances(fleet):
    instances, _ = fleet
    rng = random.Random(1)

    def heartbeats():
        for _ in range(3):
            for inst in instances:
                toggle_agent(inst.pk, rng)
                services.evaluate_instance(instance_id=inst.pk)

    race(sweeps(4), heartbeats, heartbeats)
    assert_equals_quiet_reevaluation()


def test_two_workers_evaluating_the_same_instance(fleet):
    instances, _ = fleet
    target = instances[1].pk

    def worker(seed):
        rng = random.Random(seed)

        def go():
            for _ in range(40):
                toggle_agent(target, rng)
                services.evaluate_instance(instance_id=target)

        return go

    race(worker(1), worker(2))
    assert_equals_quiet_reevaluation()


def test_policies_disabled_enabled_and_deleted_during_sweeps(fleet):
    _, policies = fleet
    extra = [
        make_policy(name=f"Agent {i}", rules={"apps": [{"name": "monitoring-agent"}]}, scope=Scope()) for i in range(3)
    ]

    def operator():
        for policy in [*policies, *extra]:
            services.policy_disable(actor=None, policy=policy)
            services.policy_enable(actor=None, policy=policy)
        for policy in extra:
            services.policy_delete(actor=None, policy=policy)

    race(sweeps(4), operator)
    assert not Policy.objects.filter(pk__in=[p.pk for p in extra]).exists()
    assert_equals_quiet_reevaluation()
    counts = {pc.policy_id: pc.noncompliant for pc in PolicyCompliance.objects.all()}
    assert counts[policies[0].pk] == sum(1 for i in range(FLEET) if i % 3 == 0)


def test_a_waiver_expiring_during_a_sweep(fleet):
    instances, policies = fleet
    expires = timezone.now() + timedelta(seconds=1.5)
    services.exception_create(
        actor=None,
        policy=policies[0],
        scope=Scope(),
        justification="Agent rollout pending for everyone",
        expires_at=expires,
    )
    assert Violation.objects.filter(status="exempted").exists()

    def expiry():
        time.sleep(max(0.0, (expires - timezone.now()).total_seconds()) + 0.05)
        services.exceptions_expire()

    def sweeping():
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            services.evaluate_fleet()

    race(sweeping, expiry)
    assert not Violation.objects.filter(status="exempted").exists()
    assert_equals_quiet_reevaluation()


def test_instances_deleted_during_sweeps_and_heartbeat_evaluations(fleet, monkeypatch, caplog):
    """Issue #12's locking gap: deleting an instance while it is evaluated failed one of the two
    (IntegrityError: a violation written between the delete's collection and its commit) or left
    counts of an instance that is gone."""
    instances, _ = fleet
    doomed = [inst.pk for inst in instances[::4]]
    apply = store.apply

    def slow_apply(*args, **kwargs):  # widen the window between an evaluation's writes and its commit
        result = apply(*args, **kwargs)
        time.sleep(0.01)
        return result

    monkeypatch.setattr(store, "apply", slow_apply)

    def slow_commit(**kwargs):  # and the delete's, between collecting the instance's rows and its commit
        time.sleep(0.02)

    post_delete.connect(slow_commit, sender=Instance, dispatch_uid="test.slow_delete")
    rng = random.Random(3)

    def heartbeats():
        for _ in range(3):
            for inst in instances:
                toggle_agent(inst.pk, rng)
                services.evaluate_instance(instance_id=inst.pk)

    def operator():
        for pk in doomed:
            time.sleep(0.03)
            fleet_services.instance_delete(actor=None, instance=Instance.objects.get(pk=pk))

    try:
        race(sweeps(4), heartbeats, operator)
    finally:
        post_delete.disconnect(dispatch_uid="test.slow_delete", sender=Instance)
    assert not [r.getMessage() for r in caplog.records if "could not be stored" in r.getMessage()]
    assert not Instance.objects.filter(pk__in=doomed).exists()
    for model in (Violation, InstanceCompliance, ReleaseRecord, PendingEvaluation):
        assert not model.objects.filter(instance_id__in=doomed).exists(), model.__name__
    assert not InstanceCompliance.objects.exclude(invalid_reason="").exists()  # no evaluation failed
    # One more deletion, nothing else running: the counts are without it at once (no sweep recounts).
    fleet_services.instance_delete(actor=None, instance=Instance.objects.get(pk=instances[1].pk))
    counted = sum(c.compliant + c.noncompliant + c.unknown for c in PolicyCompliance.objects.all())
    assert counted == sum(
        len(InstanceCompliance.decode_states(s)) for s in InstanceCompliance.objects.values_list("states", flat=True)
    )
    assert_equals_quiet_reevaluation()


def test_two_workers_draining_queued_heartbeats(fleet):
    """Queued heartbeat evaluations claimed in batches by two workers while heartbeats keep queuing
    (with eager tasks the queuing thread drains too): every instance ends as a quiet evaluation
    would leave it, and nothing is left queued."""
    instances, _ = fleet
    rng = random.Random(4)
    done = threading.Event()

    def heartbeats():
        for _ in range(4):
            for inst in instances:
                toggle_agent(inst.pk, rng)
                services.queue_instance_evaluation(instance_id=inst.pk)
        done.set()

    def worker():
        while not done.is_set():
            services.evaluate_pending()
            time.sleep(0.005)
        services.evaluate_pending()

    race(heartbeats, worker, worker)
    services.evaluate_pending()
    assert not PendingEvaluation.objects.exists()
    assert_equals_quiet_reevaluation()


def test_heartbeats_queued_at_the_same_moment_send_exactly_one_drain(postgres_required, make_instance, monkeypatch):
    """Each heartbeat's row is committed before it decides whether to send the drain task, so several
    arriving together all see each other (a canary's revert lands on its instances at once). The oldest
    row sends; before, each saw "another instance is queued", none sent, and all waited for the sweep."""
    from governance import tasks
    from governance.evaluation import pending

    instances = [make_instance() for _ in range(6)]
    PendingEvaluation.objects.all().delete()
    sent = []
    monkeypatch.setattr(tasks.evaluate_pending_task, "delay", lambda: sent.append(1))
    all_inserted = threading.Barrier(len(instances), timeout=30)
    decide = pending.first_in_line

    def after_everyone_inserted(*args):
        all_inserted.wait()
        return decide(*args)

    monkeypatch.setattr(pending, "first_in_line", after_everyone_inserted)

    def heartbeat(pk):
        try:
            pending.queue(pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=heartbeat, args=(i.pk,)) for i in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert PendingEvaluation.objects.count() == len(instances)
    assert len(sent) == 1
