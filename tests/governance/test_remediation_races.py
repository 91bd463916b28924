"""Enforce mode under real concurrency on PostgreSQL: two workers never queue the same fix twice.

First threads with their own connections racing the tick (the lease decides), then the same without the
lease (the unique (violation, number) constraint decides and the loser's commands roll back with it),
then two real Celery worker processes fed the same policy's task many times."""

import threading
import time

import pytest
from django.db import connection
from django.db.models import Count

from fleet.choices import CommandSource
from fleet.models import Command
from governance.models import RemediationAttempt, Violation
from governance.remediation import services as remediation
from governance.remediation.rails import remediation_update
from tests.conftest import wait_for
from tests.governance.conftest import make_policy

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FLEET = 12


@pytest.fixture
def enforced(postgres_required, admin_user, make_instance):
    for _ in range(FLEET):
        make_instance(apps=[])
    policy = make_policy(admin_user, rules={"apps": [{"name": "monitoring-agent", "min_version": "2.4.0"}]})
    remediation_update(
        actor=admin_user, policy=policy, data={"mode": "enforce", "max_instances": 100, "max_per_hour": None}
    )
    assert Violation.objects.filter(policy=policy).count() == FLEET
    return policy


def race(target, n=4):
    barrier, errors = threading.Barrier(n), []

    def worker():
        try:
            barrier.wait()
            target()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def one_command_per_violation(policy):
    assert Command.objects.filter(source=CommandSource.REMEDIATION).count() == FLEET
    per_violation = RemediationAttempt.objects.values("violation").annotate(n=Count("pk"))
    assert sorted(r["n"] for r in per_violation) == [1] * FLEET
    assert Violation.objects.filter(policy=policy).count() == FLEET


def test_racing_ticks_queue_exactly_one_command_per_violation(enforced):
    errors = race(lambda: [remediation.remediate_policy(policy_id=enforced.pk) for _ in range(3)])
    assert errors == []
    one_command_per_violation(enforced)


def test_without_the_lease_the_attempt_constraint_still_keeps_one_command_per_violation(enforced, monkeypatch, caplog):
    # _queue_due is what runs under the lease; called directly, nothing claims it.
    # Everyone plans first, then everyone writes: the widest possible window between read and write.
    from django.utils import timezone

    from governance.models import RemediationSettings

    rails = RemediationSettings.objects.get(pk=enforced.pk)
    plan_barrier = threading.Barrier(4)
    select = remediation.select_within_budget

    def slow_select(policy, rails_, now):
        chosen = select(policy, rails_, now)
        plan_barrier.wait(timeout=30)
        return chosen

    monkeypatch.setattr(remediation, "select_within_budget", slow_select)
    errors = race(lambda: remediation._queue_due(enforced, rails, timezone.now()))
    assert errors == []
    one_command_per_violation(enforced)
    # Three of the four lost on the constraint, and their commands rolled back with their attempts.
    assert sum("recorded concurrently" in r.getMessage() for r in caplog.records) == 3


def test_two_celery_workers_fed_the_same_policy_queue_one_command_per_violation(enforced, celery_worker_factory):
    from config.celery import app
    from governance.tasks import remediate_policy

    app.conf.task_always_eager = False  # this test's tasks go to the real workers
    celery_worker_factory(), celery_worker_factory()
    for _ in range(20):
        remediate_policy.delay(enforced.pk)
    wait_for(lambda: RemediationAttempt.objects.count() >= FLEET, timeout=60, message="every violation attempted")
    # Let the rest of the 20 tasks run through both workers before counting.
    wait_for(
        lambda: (
            not remediation.RemediationSettings.objects.filter(
                pk=enforced.pk, tick_claimed_until__isnull=False
            ).exists()
        ),
        timeout=30,
        message="the lease released",
    )
    time.sleep(3)
    one_command_per_violation(enforced)
