"""Two workers (threads with their own PostgreSQL connections) racing on one deployment: exactly one wins.

A barrier releases threads together, but on a loaded machine one thread can still commit before the
other has read the deployment; the second then meets a decided phase, which is a different (and, for
a rollback after a promotion, legitimate) sequence. Races that must overlap pass `overlapping` to
`race`: the test holds the deployment's row lock until every worker is queued behind it, so each has
read the phase it races for before any of them can write. Workers that advance the deployment get one
`now`, so a worker scheduled late does not find the next round due (that too is a different sequence).
"""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from canary import services
from canary.choices import Phase
from canary.models import EvaluationRound, HealthPoll
from common.exceptions import ConflictError
from common.models import AuditEntry, Notification
from fleet.choices import CommandSource
from fleet.models import Command
from tests.conftest import wait_for

from .conftest import agent_finishes
from .helpers import canary_runs, start

pytestmark = pytest.mark.usefixtures("postgres_required")


def race(n, fn, *, overlapping: int | None = None):
    """Run fn(i) in n threads released at the same instant; returns their results or exceptions.

    With `overlapping=<deployment id>` the test holds that deployment's row lock until every worker waits
    for it (each has read the deployment and queued its write), so their transactions overlap however
    the threads are scheduled. A worker that ends without waiting (it wrote nothing) counts as ready.
    """
    from canary.models import CanaryDeployment

    barrier = threading.Barrier(n)
    results = [None] * n
    done = [False] * n

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the loser's exception is the result
            results[i] = exc
        finally:
            done[i] = True
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    if overlapping is None:
        for t in threads:
            t.start()
    else:
        with transaction.atomic():
            CanaryDeployment.objects.select_for_update().get(pk=overlapping)
            for t in threads:
                t.start()
            wait_for(
                lambda: _waiting_for_a_lock() + sum(done) >= n,
                timeout=30,
                interval=0.02,
                message=f"{n} workers queued behind the row lock of deployment {overlapping}",
            )
    for t in threads:
        t.join(30)
    assert all(done), "a worker did not finish within 30 s"
    return results


def _waiting_for_a_lock() -> int:
    """Other sessions of this (the test) database waiting for a lock: here, the deployment's row."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees its first snapshot only
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def deployment(transactional_db, make_fleet, canary_license, operator_user):
    make_fleet(4)
    return start(operator_user, percentage=25, consecutive_healthy=1)


def test_two_simultaneous_promotions_send_the_rollout_once(deployment, operator_user):
    from canary.models import CanaryDeployment

    results = race(
        2,
        lambda i: services.canary_promote(
            actor=operator_user, deployment=CanaryDeployment.objects.get(pk=deployment.pk)
        ),
        overlapping=deployment.pk,
    )
    assert sorted(type(r).__name__ for r in results) == ["CanaryDeployment", "ConflictError"]
    loser = next(r for r in results if isinstance(r, ConflictError))
    assert "already rolling out" in loser.message
    now = timezone.now()
    race(3, lambda i: services.canary_advance(deployment_id=deployment.pk, now=now))  # three send the rollout
    assert Command.objects.filter(source=CommandSource.CANARY, description__endswith="rollout").count() == 1
    assert AuditEntry.objects.filter(action="canary.promote").count() == 1


def test_a_promotion_racing_a_rollback_leaves_exactly_one_outcome(deployment, operator_user, admin_user):
    """Both read the deployment in its canary phase; the conditional UPDATE on its phase lets one through.

    (One after the other, both succeed: a rollout may be rolled back. test_services covers that.)
    """
    from canary.models import CanaryDeployment

    def get():
        return CanaryDeployment.objects.get(pk=deployment.pk)

    promoted, rolled_back = race(
        2,
        lambda i: (
            services.canary_promote(actor=operator_user, deployment=get())
            if i == 0
            else services.canary_rollback(actor=operator_user, deployment=get())
        ),
        overlapping=deployment.pk,
    )
    assert sum(isinstance(r, ConflictError) for r in (promoted, rolled_back)) == 1
    winner = Phase.ROLLBACK if isinstance(promoted, ConflictError) else Phase.ROLLOUT
    loser = promoted if winner == Phase.ROLLBACK else rolled_back
    assert loser.extra["phase"] == winner  # the loser is told what it found
    now = timezone.now()
    race(2, lambda i: services.canary_advance(deployment_id=deployment.pk, now=now))
    deployment.refresh_from_db()
    rollouts = Command.objects.filter(description__endswith="rollout").count()
    reverts = Command.objects.filter(source=CommandSource.ROLLBACK).count()
    audit = sorted(
        AuditEntry.objects.filter(action__in=("canary.promote", "canary.rollback")).values_list("action", flat=True)
    )
    notified = list(Notification.objects.filter(user=admin_user).values_list("title", flat=True))
    if winner == Phase.ROLLOUT:
        assert (deployment.phase, rollouts, reverts, audit, notified) == (Phase.ROLLOUT, 1, 0, ["canary.promote"], [])
    else:
        assert (deployment.phase, rollouts, reverts, audit) == (Phase.ROLLBACK, 0, 1, ["canary.rollback"])
        assert notified == [f"Canary {deployment} rolled back by a person"]


def test_two_workers_advancing_the_same_due_round_poll_and_promote_once(deployment):
    agent_finishes(canary_runs(deployment))
    services.canary_advance(deployment_id=deployment.pk)  # → evaluation, first round due now
    deployment.refresh_from_db()
    assert deployment.phase == Phase.EVALUATION
    # One instant for all four: a worker the machine schedules a check interval late would otherwise
    # rightly find the next round due and poll again.
    now = timezone.now()
    race(4, lambda i: services.canary_advance(deployment_id=deployment.pk, now=now))
    deployment.refresh_from_db()
    assert deployment.phase == Phase.ROLLOUT
    assert deployment.poll_round == 1 and deployment.rounds_recorded == 1
    assert EvaluationRound.objects.filter(deployment=deployment).count() == 1
    assert HealthPoll.objects.filter(deployment=deployment).count() == 1
    assert Command.objects.filter(description__endswith="rollout").count() == 1
    assert AuditEntry.objects.filter(action="canary.promote").count() == 1
