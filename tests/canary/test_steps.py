"""Progressive delivery through the services: steps, approval, pause / resume, waves, the watch, safety."""

from datetime import timedelta

import pytest
from django.utils import timezone

from canary import services
from canary.choices import Phase, RoundMode
from canary.models import CanaryDeployment, EvaluationRound
from common.exceptions import ApplicationError, ConflictError
from common.models import AuditEntry, Notification
from fleet.choices import CommandSource, RunStatus
from fleet.models import Command, CommandRun
from fleet.scopes import Scope

from .conftest import agent_finishes
from .helpers import start


def advance(deployment, now=None):
    services.canary_advance(deployment_id=deployment.pk, now=now)
    deployment.refresh_from_db()
    return deployment.phase


def pending_runs(deployment):
    """The runs of the deployment's change not finished yet (what the agents would pick up next)."""
    return list(
        CommandRun.objects.filter(
            command__source=CommandSource.CANARY,
            command__description__startswith=f"Canary #{deployment.pk}:",
            status=RunStatus.PENDING,
        ).select_related("instance")
    )


def reached(deployment):
    return sorted(deployment.targets.filter(step__isnull=False).values_list("instance__name", "step"))


@pytest.fixture
def five(make_fleet, canary_license, admin_user):
    return make_fleet(5)


def test_each_step_is_sent_and_evaluated_in_turn_and_the_last_reaches_everyone(five, operator_user):
    deployment = start(operator_user, steps=[{"percentage": 20}, {"percentage": 60}, {"percentage": 100}])
    assert reached(deployment) == [("web-1", 1)]
    agent_finishes(pending_runs(deployment))
    assert advance(deployment) == Phase.EVALUATION
    assert advance(deployment) == Phase.CANARY  # step 1 passed: step 2 is being applied
    assert deployment.current_step == 2
    assert reached(deployment) == [("web-1", 1), ("web-2", 2), ("web-3", 2)]
    step2 = Command.objects.get(description=f"Canary #{deployment.pk}: step 2 of 3")
    assert step2.scope_label == "Instances: web-2, web-3"
    agent_finishes(pending_runs(deployment))
    assert advance(deployment) == Phase.EVALUATION
    assert advance(deployment) == Phase.ROLLOUT
    assert reached(deployment)[-2:] == [("web-4", 3), ("web-5", 3)]
    agent_finishes(pending_runs(deployment))
    assert advance(deployment) == Phase.ROLLOUT
    assert advance(deployment) == Phase.SUCCEEDED
    last = EvaluationRound.objects.filter(deployment=deployment).last()
    assert (last.step, last.total, last.healthy, last.mode) == (3, 5, 5, RoundMode.EVALUATE)
    assert AuditEntry.objects.filter(action="canary.step", object_id=str(deployment.pk)).count() == 1
    assert AuditEntry.objects.filter(action="canary.promote", object_id=str(deployment.pk)).count() == 1


def test_a_failure_at_step_two_rolls_back_every_instance_the_change_reached(five, operator_user, admin_user):
    deployment = start(operator_user, steps=[{"percentage": 20}, {"percentage": 60}, {"percentage": 100}])
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    advance(deployment)
    five[2].server.mode = "fail"  # web-3, reached by step 2, breaks
    agent_finishes(pending_runs(deployment))
    assert advance(deployment) == Phase.EVALUATION
    assert advance(deployment, deployment.deadline_at) == Phase.ROLLBACK
    assert deployment.failure_reason.startswith("Step 2 (step 2 of 3): The success threshold was not met")
    assert deployment.failure_details == {"web-3": ["health_check: HTTP 500"]}
    reverts = Command.objects.filter(source=CommandSource.ROLLBACK)
    assert sorted(c.runs.get().instance.name for c in reverts) == ["web-1", "web-2", "web-3"]
    note = Notification.objects.get(user=admin_user, title__contains="failed and is rolling back")
    assert note.level == "critical" and "web-3: health_check: HTTP 500" in note.body
    five[2].server.mode = "ok"
    agent_finishes(list(CommandRun.objects.filter(command__source=CommandSource.ROLLBACK)))
    assert advance(deployment, timezone.now() + timedelta(seconds=5)) == Phase.ROLLED_BACK
    assert deployment.rollback_note.startswith("Rollback verified: all 3 instances the change reached")
    assert not CommandRun.objects.filter(instance__name__in=["web-4", "web-5"]).exists()


def test_a_step_with_approval_waits_for_a_person_while_health_is_still_watched(
    five, operator_user, admin_user, viewer_user
):
    deployment = start(operator_user, steps=[{"percentage": 20, "approval": True}, {"percentage": 100}])
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    assert advance(deployment) == Phase.EVALUATION
    assert deployment.awaiting_approval
    # Everyone who may approve hears of it (operators too), and nobody who may not.
    waiting = Notification.objects.filter(title__contains="waiting for approval")
    assert sorted(waiting.values_list("user__username", flat=True)) == ["alice", "oscar"]
    now = timezone.now()
    assert advance(deployment, now + timedelta(seconds=1)) == Phase.EVALUATION  # still waiting…
    assert EvaluationRound.objects.filter(deployment=deployment).last().mode == RoundMode.WATCH  # …and watching
    services.canary_approve(actor=operator_user, deployment=deployment)
    assert deployment.phase == Phase.ROLLOUT and not deployment.awaiting_approval
    with pytest.raises(ConflictError, match="not waiting for an approval"):
        services.canary_approve(actor=operator_user, deployment=deployment)
    advance(deployment)
    assert len(pending_runs(deployment)) == 4
    assert AuditEntry.objects.filter(action="canary.approve", actor=operator_user).exists()


def test_a_failure_while_awaiting_approval_rolls_back(five, operator_user):
    deployment = start(operator_user, steps=[{"percentage": 20, "approval": True}, {"percentage": 100}])
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    advance(deployment)
    assert deployment.awaiting_approval
    five[0].server.mode = "fail"
    assert advance(deployment, timezone.now() + timedelta(seconds=1)) == Phase.ROLLBACK
    assert "Health failed past the threshold" in deployment.failure_reason


def test_pause_holds_the_promotion_and_the_clock_and_resume_carries_on(five, operator_user):
    deployment = start(operator_user, percentage=20, max_duration=10)
    agent_finishes(pending_runs(deployment))
    assert advance(deployment) == Phase.EVALUATION
    services.canary_pause(actor=operator_user, deployment=deployment, reason="checking the dashboards")
    assert deployment.paused and deployment.pause_reason == "checking the dashboards"
    with pytest.raises(ConflictError, match="already paused"):
        services.canary_pause(actor=operator_user, deployment=deployment)
    deadline = deployment.deadline_at
    assert advance(deployment, deadline + timedelta(seconds=5)) == Phase.EVALUATION  # healthy, yet not promoted
    assert EvaluationRound.objects.get(deployment=deployment).mode == RoundMode.WATCH
    services.canary_resume(actor=operator_user, deployment=deployment)
    assert not deployment.paused and deployment.deadline_at > deadline  # extended by the time paused
    assert advance(deployment, deadline + timedelta(seconds=6)) == Phase.ROLLOUT  # the next round promotes
    with pytest.raises(ConflictError, match="not paused"):
        services.canary_resume(actor=operator_user, deployment=deployment)


def test_while_paused_no_further_instance_gets_the_change(five, operator_user):
    deployment = start(operator_user, percentage=20, max_unavailable=2)
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    advance(deployment)  # promoted: the rollout's first wave of 2 is queued
    assert len(pending_runs(deployment)) == 2
    services.canary_pause(actor=operator_user, deployment=deployment)
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    assert pending_runs(deployment) == []  # the next wave waits
    services.canary_resume(actor=operator_user, deployment=deployment)
    advance(deployment)
    assert len(pending_runs(deployment)) == 2


def test_max_unavailable_sends_the_rollout_in_waves(five, operator_user):
    deployment = start(operator_user, percentage=20, max_unavailable=2)
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    advance(deployment)
    waves = []
    while pending := pending_runs(deployment):
        waves.append(sorted(r.instance.name for r in pending))
        agent_finishes(pending)
        advance(deployment)
    assert waves == [["web-2", "web-3"], ["web-4", "web-5"]]
    descriptions = list(
        Command.objects.filter(description__contains="rollout").order_by("pk").values_list("description", flat=True)
    )
    assert descriptions == [f"Canary #{deployment.pk}: rollout", f"Canary #{deployment.pk}: rollout, wave 2"]


def test_an_established_instance_failing_during_a_later_step_rolls_back_at_once(five, operator_user):
    deployment = start(operator_user, steps=[{"percentage": 20}, {"percentage": 60}])
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    advance(deployment)  # step 2 is being applied
    five[0].server.mode = "fail"  # web-1 passed step 1, now breaks
    assert advance(deployment, timezone.now() + timedelta(seconds=1)) == Phase.ROLLBACK
    assert deployment.failure_details == {"web-1": ["health_check: HTTP 500"]}


def test_a_second_deployment_of_the_same_app_on_the_same_instances_is_refused_naming_the_running_one(
    five, operator_user
):
    first = start(operator_user, percentage=20, name="web-app 2.0 to everyone")
    with pytest.raises(ConflictError) as refused:
        start(operator_user, percentage=40)
    assert refused.value.message.startswith(
        f"web-app 2.0 to everyone (#{first.pk}, canary) is already changing app web-app on 5 of these instances"
    )
    assert refused.value.extra["running_deployment"] == {
        "id": first.pk,
        "name": "web-app 2.0 to everyone",
        "phase": "canary",
    }
    other_app = services.canary_create(
        actor=operator_user,
        kind="install_app",
        params={"app": "log-shipper"},
        scope=first.scope,
        percentage=20,
        check_interval=1,
        max_duration=30,
    )
    assert other_app.phase == Phase.CANARY  # a different app on the same instances is fine
    services.canary_rollback(actor=operator_user, deployment=first)
    with pytest.raises(ConflictError, match="rollback"):
        start(operator_user, percentage=40)  # still reverting: still changing web-app
    CanaryDeployment.objects.filter(pk=first.pk).update(phase=Phase.ROLLED_BACK)
    assert start(operator_user, percentage=40).phase == Phase.CANARY


def test_instances_lacking_the_app_are_excluded_and_listed_or_the_start_refused(five, operator_user):
    five[1].apps = []
    five[1].save()
    with pytest.raises(ApplicationError) as refused:
        start(operator_user, percentage=40, missing_app_policy="refuse")
    assert refused.value.errors == {"missing_app": [refused.value.message]}
    assert "1 instance(s) in scope lack web-app, so the change would fail there: web-2" in refused.value.message
    assert not CanaryDeployment.objects.exists()
    deployment = start(operator_user, percentage=40)
    excluded = deployment.targets.get(excluded=True)
    assert (excluded.instance.name, excluded.exclusion_kind, excluded.exclusion_reason) == (
        "web-2",
        "missing_app",
        "web-app is not installed",
    )
    assert reached(deployment) == [("web-1", 1), ("web-3", 1)]  # 40 % of the 4 that have the app
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    advance(deployment)
    assert sorted(r.instance.name for r in pending_runs(deployment)) == ["web-4", "web-5"]  # never web-2


def test_a_rollout_instance_already_unhealthy_before_the_change_is_watched_not_judged(five, operator_user):
    deployment = start(operator_user, percentage=20)
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    five[4].server.mode = "fail"  # web-5 was broken before the rollout reached it
    advance(deployment)
    target = deployment.targets.get(instance__name="web-5")
    assert not target.judged and target.exclusion_reason == "not judged: unhealthy before the change: HTTP 500"
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    assert advance(deployment) == Phase.SUCCEEDED


def test_named_instances_go_first_and_the_percentage_after_them_counts_the_whole_scope(five, operator_user):
    web4 = five[3]
    deployment = start(operator_user, steps=[{"instances": [web4.pk]}, {"percentage": 60}, {"percentage": 100}])
    assert reached(deployment) == [("web-4", 1)]
    assert deployment.canary_command.scope_label == "Instances: web-4"  # the queue says what it ran on
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    assert advance(deployment) == Phase.CANARY  # step 1 passed: step 2 tops the share up to 60 % (3 of 5)
    assert reached(deployment) == [("web-1", 2), ("web-2", 2), ("web-4", 1)]


def test_after_a_license_downgrade_the_worker_still_takes_a_running_deployment_to_its_end(
    five, operator_user, install_license
):
    deployment = start(operator_user, percentage=20)
    install_license("pro")
    agent_finishes(pending_runs(deployment))
    assert advance(deployment) == Phase.EVALUATION
    assert advance(deployment) == Phase.ROLLOUT  # promoted by its evaluation, not by a person
    agent_finishes(pending_runs(deployment))
    advance(deployment)
    assert advance(deployment) == Phase.SUCCEEDED
    with pytest.raises(ApplicationError, match="Business"):
        start(operator_user, percentage=20)  # a new one needs the license


def test_a_second_deployment_setting_the_same_config_key_is_refused_another_key_is_not(five, operator_user):
    def config(values, unset=()):
        return services.canary_create(
            actor=operator_user,
            kind="set_config",
            params={"values": values, "unset": list(unset)},
            scope=Scope(),
            percentage=20,
            check_interval=1,
            max_duration=30,
        )

    first = config({"log_level": "debug"})
    with pytest.raises(ConflictError, match=f"#{first.pk}, canary\\) is already changing setting log_level on 5 of"):
        config({"workers": 4}, unset=["log_level"])  # unsetting the key changes it too
    assert config({"workers": 4}).phase == Phase.CANARY
