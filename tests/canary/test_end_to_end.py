"""End to end: a real Celery worker and beat on Redis, PostgreSQL, and a simulated fleet of real agents
and health endpoints talking to a live server. Nothing is called by hand after the deployment starts."""

from datetime import timedelta

import pytest

from canary import services
from canary.choices import Criterion, Phase, SelectionKind
from canary.models import CanaryDeployment
from common.models import AuditEntry, Notification
from fleet.choices import CommandSource, CommandType, RunStatus
from fleet.models import Command, CommandRun, Instance
from fleet.scopes import Scope
from fleet.services import command_create
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("postgres_required")]


def web_app_version(instance: Instance):
    return next((a["version"] for a in Instance.objects.get(pk=instance.pk).apps if a["name"] == "web-app"), None)


@pytest.fixture
def fleet(simulated_fleet, canary_license, admin_user):
    """Four simulated instances, all running web-app 1.0 (installed through the queue, as in life)."""
    sim = simulated_fleet(count=4, heartbeat_interval=0.5, command_poll_interval=0.3)
    wait_for(lambda: Instance.objects.filter(status="online").count() == 4, timeout=30, message="4 instances online")
    command_create(
        actor=admin_user, kind=CommandType.INSTALL_APP, params={"app": "web-app", "version": "1.0"}, scope=Scope()
    )
    wait_for(
        lambda: all(web_app_version(i) == "1.0" for i in Instance.objects.all()),
        timeout=30,
        message="web-app 1.0 everywhere",
    )
    return sim


def start_canary(actor, version, **kw):
    options = {
        "selection": SelectionKind.PERCENTAGE,
        "percentage": 50,
        "criteria": [Criterion.ONLINE, Criterion.HEALTH_CHECK],
        "check_interval": 1,
        "max_duration": 15,
        **kw,
    }
    return services.canary_create(
        actor=actor,
        kind=CommandType.UPDATE_APP,
        params={"app": "web-app", "version": version},
        scope=Scope(),
        **options,
    )


def phase_is(deployment, *phases):
    deployment.refresh_from_db()
    return deployment.phase in phases


def test_a_bad_version_fails_health_and_rolls_back_by_itself_to_the_old_version(
    fleet, operator_user, admin_user, celery_worker_factory
):
    celery_worker_factory()
    celery_worker_factory(beat=True)
    deployment = start_canary(operator_user, "2.0+fail")
    canary = [t.instance for t in deployment.targets.filter(excluded=False)]
    assert len(canary) == 2
    wait_for(lambda: phase_is(deployment, Phase.ROLLED_BACK, Phase.FAILED), timeout=120, message="the rollback")
    assert deployment.phase == Phase.ROLLED_BACK
    # Decided at the max duration (the beat looks every 5 s, a round takes at most the probe timeout).
    assert deployment.decided_at <= deployment.deadline_at + timedelta(seconds=10)
    assert "The success threshold was not met within the max duration (15 s)" in deployment.failure_reason
    assert all("health_check: HTTP 500" in f[0] for f in deployment.failure_details.values())
    assert sorted(deployment.failure_details) == sorted(i.name for i in canary)
    assert deployment.rollback_verified is True, deployment.rollback_note
    # The canary instances are back on 1.0; the others never saw 2.0+fail.
    wait_for(lambda: all(web_app_version(i) == "1.0" for i in canary), timeout=15, message="canaries back on 1.0")
    assert all(fleet.get(i.name).health == "ok" for i in canary)
    assert deployment.rollout_command is None
    others = Instance.objects.exclude(pk__in=[i.pk for i in canary])
    assert not CommandRun.objects.filter(instance__in=others, command__params__version="2.0+fail").exists()
    assert Command.objects.filter(source=CommandSource.ROLLBACK).count() == 2
    assert Notification.objects.filter(user=admin_user, title__contains="failed and is rolling back").count() == 1


def test_a_good_version_rolls_out_to_the_whole_scope(fleet, operator_user, celery_worker_factory):
    celery_worker_factory()
    celery_worker_factory(beat=True)
    deployment = start_canary(operator_user, "2.0")
    wait_for(
        lambda: phase_is(deployment, Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK), timeout=120, message="success"
    )
    assert deployment.phase == Phase.SUCCEEDED, deployment.failure_reason
    assert not deployment.forced
    wait_for(
        lambda: all(web_app_version(i) == "2.0" for i in Instance.objects.all()), timeout=15, message="2.0 everywhere"
    )
    assert deployment.rollout_command.runs.filter(status=RunStatus.COMPLETED).count() == 2


def test_a_worker_killed_mid_evaluation_is_replaced_and_the_deployment_completes_once(
    fleet, operator_user, admin_user, celery_worker_factory
):
    worker = celery_worker_factory()
    celery_worker_factory(beat=True)
    # Three healthy rounds in a row are needed, so the evaluation lasts several beats.
    deployment = start_canary(operator_user, "2.0", consecutive_healthy=3, max_duration=60)
    wait_for(
        lambda: phase_is(deployment, Phase.EVALUATION) and deployment.poll_round >= 1, timeout=60, message="evaluation"
    )
    worker.kill(9)
    assert worker.proc.returncode == -9
    rounds_at_kill = CanaryDeployment.objects.get(pk=deployment.pk).poll_round
    celery_worker_factory()
    wait_for(
        lambda: phase_is(deployment, Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK), timeout=150, message="success"
    )
    assert deployment.phase == Phase.SUCCEEDED, deployment.failure_reason
    assert deployment.poll_round > rounds_at_kill  # the new worker carried on evaluating
    assert Command.objects.filter(description=f"Canary #{deployment.pk}: rollout").count() == 1
    assert AuditEntry.objects.filter(action="canary.promote", object_id=str(deployment.pk)).count() == 1
    assert AuditEntry.objects.filter(action="canary.succeeded", object_id=str(deployment.pk)).count() == 1
    assert Notification.objects.filter(user=admin_user, title__endswith="succeeded").count() == 1
