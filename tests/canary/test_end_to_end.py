"""End to end: a real Celery worker and beat on Redis, PostgreSQL, and a simulated fleet of real agents
and health endpoints talking to a live server. Nothing is called by hand after the deployment starts."""

from datetime import timedelta

import pytest

from canary import services
from canary.choices import Criterion, Phase, SelectionKind
from canary.models import CanaryDeployment, CanaryTarget, EvaluationRound
from common.exceptions import ConflictError
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
        "criteria": [Criterion.ONLINE, Criterion.HEALTH_CHECK],
        "check_interval": 1,
        "max_duration": 15,
        **kw,
    }
    if "steps" not in options:
        options.setdefault("selection", SelectionKind.PERCENTAGE)
        options.setdefault("percentage", 50)
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


def workers(celery_worker_factory):
    """One worker (two threads, as the other end-to-end tests) and beat, the safety net."""
    return celery_worker_factory(), celery_worker_factory(beat=True)


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
    # Decided by the last round on the grid at or before the max duration: within one interval after it.
    assert deployment.decided_at <= deployment.deadline_at + timedelta(seconds=deployment.check_interval_seconds)
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


# --- Timing, steps, pause, overlap and fail-fast through the real worker ------------------------------


def test_a_healthy_canary_polled_every_second_needing_15_in_a_row_succeeds_with_each_round_on_time(
    fleet, operator_user, celery_worker_factory
):
    """The issue's case: every poll 200, interval 1 s, 15 consecutive healthy polls, max duration 40 s."""
    workers(celery_worker_factory)
    deployment = start_canary(operator_user, "2.0", percentage=50, consecutive_healthy=15, max_duration=40)
    wait_for(
        lambda: phase_is(deployment, Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK), timeout=150, message="success"
    )
    assert deployment.phase == Phase.SUCCEEDED, deployment.failure_reason
    rounds = list(EvaluationRound.objects.filter(deployment=deployment, purpose="evaluation").order_by("number"))
    canary_rounds = [r for r in rounds if r.step == 1]
    assert len(canary_rounds) == 15  # promoted by the 15th round in a row, not one later
    assert all(r.healthy == r.total for r in rounds)  # every round's healthy share: 100 %
    assert all(r.healthy_share == 100.0 for r in rounds)
    # Every round started within 0.5 s of its due time…
    late = [(r.number, (r.started_at - r.due_at).total_seconds()) for r in rounds]
    assert all(0 <= lateness <= 0.5 for _, lateness in late), late
    # …and the due times are the grid: one interval apart through the canary's evaluation, and the
    # rollout's from its own evaluation start (k = 0 at once, not a scheduler tick later). Rounds while
    # the rollout was being sent watch on the canary's grid.
    assert all(
        (b.due_at - a.due_at).total_seconds() == 1.0 for a, b in zip(canary_rounds, canary_rounds[1:], strict=False)
    )
    anchor = deployment.evaluation_started_at
    judged = [r for r in rounds if r.step == 2 and r.mode == "evaluate"]
    assert judged and [(r.due_at - anchor).total_seconds() for r in judged] == [float(k) for k in range(len(judged))]
    assert rounds[-1].total == 4  # the rollout was judged over every instance the change reached


def test_a_three_step_deployment_failing_at_step_two_rolls_back_every_instance_it_reached(
    fleet, operator_user, admin_user, celery_worker_factory
):
    workers(celery_worker_factory)
    deployment = start_canary(
        operator_user,
        "2.0",
        steps=[{"percentage": 25}, {"percentage": 50}, {"percentage": 100}],
        consecutive_healthy=2,
        max_duration=20,
    )
    step_two = wait_for(
        lambda: CanaryTarget.objects.filter(deployment=deployment, step=2, run__isnull=False).first(),
        timeout=60,
        message="step 2 sent",
    )
    fleet.inject(step_two.instance.name, "fail")  # the change breaks the instance of step 2
    wait_for(
        lambda: phase_is(deployment, Phase.ROLLBACK, Phase.ROLLED_BACK, Phase.FAILED), timeout=60, message="rollback"
    )
    assert deployment.failure_reason.startswith("Step 2 (step 2 of 3): The success threshold can no longer be met")
    fleet.inject(step_two.instance.name, "ok")
    wait_for(lambda: phase_is(deployment, Phase.ROLLED_BACK, Phase.FAILED), timeout=60, message="rolled back")
    assert deployment.phase == Phase.ROLLED_BACK and deployment.rollback_verified, deployment.rollback_note
    reached = [t.instance for t in CanaryTarget.objects.filter(deployment=deployment, step__isnull=False)]
    assert len(reached) == 2
    wait_for(lambda: all(web_app_version(i) == "1.0" for i in reached), timeout=15, message="both back on 1.0")
    assert Command.objects.filter(source=CommandSource.ROLLBACK).count() == 2
    others = Instance.objects.exclude(pk__in=[i.pk for i in reached])
    assert not CommandRun.objects.filter(instance__in=others, command__source=CommandSource.CANARY).exists()
    assert Notification.objects.filter(user=admin_user, title__contains="failed and is rolling back").count() == 1


def test_a_paused_deployment_holds_refuses_an_overlapping_one_and_completes_after_resume(
    fleet, operator_user, celery_worker_factory
):
    workers(celery_worker_factory)
    deployment = start_canary(operator_user, "2.0", percentage=25, max_duration=30)
    services.canary_pause(actor=operator_user, deployment=deployment, reason="watching the graphs")
    wait_for(lambda: EvaluationRound.objects.filter(deployment=deployment).count() >= 3, timeout=60, message="3 rounds")
    deployment.refresh_from_db()
    assert deployment.phase == Phase.EVALUATION  # healthy, but held
    assert set(EvaluationRound.objects.filter(deployment=deployment).values_list("mode", flat=True)) == {"watch"}
    with pytest.raises(ConflictError, match=f"#{deployment.pk}, evaluation\\) is already changing app web-app"):
        start_canary(operator_user, "3.0")
    services.canary_resume(actor=operator_user, deployment=deployment)
    wait_for(lambda: phase_is(deployment, Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK), timeout=60, message="done")
    assert deployment.phase == Phase.SUCCEEDED, deployment.failure_reason
    assert AuditEntry.objects.filter(action="canary.pause").count() == 1
    assert AuditEntry.objects.filter(action="canary.resume").count() == 1


def test_a_canary_that_can_no_longer_pass_is_rolled_back_long_before_its_max_duration(
    fleet, operator_user, celery_worker_factory
):
    workers(celery_worker_factory)
    # 15 healthy rounds in a row are needed within 30 s: once a failing instance has fewer than 15 rounds
    # left, the threshold can no longer be met.
    deployment = start_canary(operator_user, "2.0+fail", consecutive_healthy=15, max_duration=30)
    wait_for(
        lambda: phase_is(deployment, Phase.ROLLBACK, Phase.ROLLED_BACK, Phase.FAILED), timeout=60, message="rollback"
    )
    assert "can no longer be met within the max duration (30 s)" in deployment.failure_reason
    assert deployment.decided_at < deployment.deadline_at - timedelta(seconds=10)
    wait_for(lambda: phase_is(deployment, Phase.ROLLED_BACK, Phase.FAILED), timeout=60, message="rolled back")
    assert deployment.rollback_verified is True, deployment.rollback_note
