"""Two workers (threads with their own PostgreSQL connections) racing on one deployment: exactly one wins."""

import threading

import pytest
from django.db import connection

from canary import services
from canary.choices import Phase
from canary.models import EvaluationRound, HealthPoll
from common.exceptions import ConflictError
from common.models import AuditEntry
from fleet.choices import CommandSource
from fleet.models import Command

from .conftest import agent_finishes
from .helpers import canary_runs, start

pytestmark = pytest.mark.usefixtures("postgres_required")


def race(n, fn):
    """Run fn(i) in n threads released at the same instant; returns their results or exceptions."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the loser's exception is the result
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


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
    )
    assert sorted(type(r).__name__ for r in results) == ["CanaryDeployment", "ConflictError"]
    loser = next(r for r in results if isinstance(r, ConflictError))
    assert "already rolling out" in loser.message
    race(3, lambda i: services.canary_advance(deployment_id=deployment.pk))  # three workers send the rollout
    assert Command.objects.filter(source=CommandSource.CANARY, description__endswith="rollout").count() == 1
    assert AuditEntry.objects.filter(action="canary.promote").count() == 1


def test_a_promotion_racing_a_rollback_leaves_exactly_one_outcome(deployment, operator_user):
    from canary.models import CanaryDeployment

    def get():
        return CanaryDeployment.objects.get(pk=deployment.pk)

    barrier_results = race(
        2,
        lambda i: (
            services.canary_promote(actor=operator_user, deployment=get())
            if i == 0
            else services.canary_rollback(actor=operator_user, deployment=get())
        ),
    )
    assert sum(isinstance(r, ConflictError) for r in barrier_results) == 1
    race(2, lambda i: services.canary_advance(deployment_id=deployment.pk))
    deployment.refresh_from_db()
    rollouts = Command.objects.filter(description__endswith="rollout").count()
    reverts = Command.objects.filter(source=CommandSource.ROLLBACK).count()
    assert (deployment.phase, rollouts, reverts) in ((Phase.ROLLOUT, 1, 0), (Phase.ROLLBACK, 0, 1))


def test_two_workers_advancing_the_same_due_round_poll_and_promote_once(deployment):
    agent_finishes(canary_runs(deployment))
    services.canary_advance(deployment_id=deployment.pk)  # → evaluation, first round due now
    deployment.refresh_from_db()
    assert deployment.phase == Phase.EVALUATION
    race(4, lambda i: services.canary_advance(deployment_id=deployment.pk))
    deployment.refresh_from_db()
    assert deployment.phase == Phase.ROLLOUT
    assert deployment.poll_round == 1 and deployment.rounds_recorded == 1
    assert EvaluationRound.objects.filter(deployment=deployment).count() == 1
    assert HealthPoll.objects.filter(deployment=deployment).count() == 1
    assert Command.objects.filter(description__endswith="rollout").count() == 1
    assert AuditEntry.objects.filter(action="canary.promote").count() == 1
