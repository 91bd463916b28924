"""The state machine through its services, against real health servers on loopback."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from canary import services
from canary.choices import Criterion, Phase, PollPurpose, PreflightPolicy, TargetRole
from canary.models import CanaryDeployment, EvaluationRound, HealthPoll
from canary.services import transitions
from common.exceptions import ApplicationError, ConflictError, UpgradeRequired
from common.models import AuditEntry, Notification
from fleet.choices import CommandSource, InstanceStatus, RunStatus
from fleet.models import Command, CommandRun
from fleet.signals import command_run_finished

from .conftest import agent_finishes
from .helpers import canary_runs, open_violation, start


def advance(deployment, now=None):
    services.canary_advance(deployment_id=deployment.pk, now=now)
    deployment.refresh_from_db()
    return deployment.phase


def to_evaluation(deployment):
    agent_finishes(canary_runs(deployment))
    assert advance(deployment) == Phase.EVALUATION


@pytest.fixture
def three(make_fleet, canary_license, admin_user):
    return make_fleet(3)


# --- Creating -------------------------------------------------------------------------------


def test_creating_without_the_license_feature_is_refused_and_writes_nothing(make_fleet, install_license, operator_user):
    install_license("pro")
    make_fleet(2)
    with pytest.raises(UpgradeRequired):
        start(operator_user)
    assert not CanaryDeployment.objects.exists()
    assert not Command.objects.exists()


def test_creating_sends_the_change_to_the_canary_group_only(make_fleet, canary_license, operator_user):
    fleet = make_fleet(10)
    deployment = start(operator_user, percentage=20)
    assert deployment.phase == Phase.CANARY
    runs = canary_runs(deployment)
    assert sorted(r.instance.name for r in runs) == ["web-1", "web-10"]  # 20 % of 10, by name
    assert deployment.canary_command.source == CommandSource.CANARY
    assert deployment.canary_command.params == {"app": "web-app", "version": "2.0"}
    assert deployment.canary_command.scope_label == "Instances: web-1, web-10"  # the queue's target: not "All"
    assert runs[0].before_state == {"installed": True, "version": "1.0", "running": True}
    assert deployment.targets.filter(role=TargetRole.CANARY, excluded=False).count() == 2
    assert deployment.deadline_at == deployment.started_at + timedelta(seconds=30)
    entry = AuditEntry.objects.get(action="canary.create")
    assert entry.actor == operator_user and entry.details["canary"] == ["web-1", "web-10"]
    assert entry.details["planned_rollout"] == 8
    assert len(fleet) == 10


def test_preflight_excludes_offline_and_unhealthy_candidates_with_the_reason(make_fleet, canary_license, operator_user):
    fleet = make_fleet(5)
    fleet[0].server.mode = "fail"
    fleet[1].status, fleet[1].last_seen_at = InstanceStatus.OFFLINE, None
    fleet[1].save()
    deployment = start(operator_user, percentage=40)  # 2 of 5
    excluded = {t.instance.name: t.exclusion_reason for t in deployment.targets.filter(excluded=True)}
    assert excluded == {"web-1": "unhealthy before the change: HTTP 500", "web-2": "offline"}
    assert sorted(r.instance.name for r in canary_runs(deployment)) == ["web-3", "web-4"]


def test_preflight_block_refuses_the_start_and_lists_why(make_fleet, canary_license, operator_user):
    fleet = make_fleet(3)
    fleet[0].server.mode = "hang"
    with pytest.raises(ApplicationError) as err:
        start(operator_user, percentage=33, preflight_policy=PreflightPolicy.BLOCK)
    assert "the policy is to block: web-1: unhealthy before the change: timed out after 0.5 s" in err.value.message
    assert err.value.extra["excluded"] == [
        {"instance": "web-1", "reason": "unhealthy before the change: timed out after 0.5 s"}
    ]
    assert not CanaryDeployment.objects.exists() and not Command.objects.exists()


def test_no_healthy_candidate_refuses_the_start_even_when_excluding(make_fleet, canary_license, operator_user):
    fleet = make_fleet(2)
    for inst in fleet:
        inst.server.mode = "fail"
    with pytest.raises(ApplicationError, match="No canary candidate is online and healthy"):
        start(operator_user, percentage=50)
    assert not CanaryDeployment.objects.exists()


def test_named_canary_instances_must_be_in_the_scope(make_fleet, canary_license, operator_user):
    from fleet.scopes import Scope

    fleet = make_fleet(3)
    scope = Scope(kind="instances", instance_ids=(fleet[0].pk, fleet[1].pk))
    with pytest.raises(ApplicationError, match="not in it: web-3"):
        start(operator_user, instances=[fleet[2]], scope=scope)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"success_threshold": 0}, "threshold must be between 1 and 100"),
        ({"health_path": "health"}, "must be a path starting with /"),
        ({"health_path": "//evil.example/x"}, "no host, user, // or backslash"),
        ({"health_path": "http://169.254.169.254/latest"}, "must be a path starting with /"),
        ({"health_path": "/a@b"}, "no host, user, // or backslash"),
        ({"health_path": "/a\\b"}, "no host, user, // or backslash"),
        ({"health_path": "/a b"}, "only contain URL path characters"),
        ({"criteria": []}, "at least one success criterion"),
        ({"check_interval": 10, "max_duration": 5}, "must be at least the check interval"),
        ({"consecutive_healthy": 40, "check_interval": 1, "max_duration": 30}, "could never pass"),
        ({"criteria": ["uptime"]}, "Unknown criterion 'uptime'"),
    ],
)
def test_bad_input_is_refused_in_words(three, operator_user, options, message):
    with pytest.raises(ApplicationError, match=message):
        start(operator_user, **options)
    assert not CanaryDeployment.objects.exists()


# --- Canary → evaluation → rollout -----------------------------------------------------------


def test_the_deployment_stays_in_canary_until_every_canary_run_finishes(make_fleet, canary_license, operator_user):
    make_fleet(4)
    deployment = start(operator_user, percentage=50)
    first, second = canary_runs(deployment)
    agent_finishes([first])
    assert advance(deployment) == Phase.CANARY
    agent_finishes([second])
    assert advance(deployment) == Phase.EVALUATION
    assert deployment.evaluation_started_at is not None


def test_a_healthy_canary_is_promoted_and_rolled_out_to_the_rest_then_succeeds(three, operator_user, admin_user):
    deployment = start(operator_user, percentage=33)
    to_evaluation(deployment)
    assert advance(deployment) == Phase.ROLLOUT
    assert not deployment.forced
    rollout_runs = list(deployment.rollout_command.runs.select_related("instance"))
    assert sorted(r.instance.name for r in rollout_runs) == ["web-2", "web-3"]
    assert deployment.rollout_command.scope_label == "Instances: web-2, web-3"  # what it ran on
    poll = HealthPoll.objects.get(deployment=deployment)
    assert (poll.status_code, poll.healthy, poll.round) == (200, True, 1)
    assert EvaluationRound.objects.get(deployment=deployment).healthy_share == 100.0
    assert advance(deployment) == Phase.ROLLOUT  # rollout runs still pending
    agent_finishes(rollout_runs)
    assert advance(deployment) == Phase.ROLLOUT  # applied: the rollout is judged by health too
    assert advance(deployment) == Phase.SUCCEEDED
    final = EvaluationRound.objects.filter(deployment=deployment).last()
    assert (final.step, final.total, final.healthy) == (2, 3, 3)  # every instance the change reached
    assert deployment.finished_at and deployment.next_poll_at is None
    assert Notification.objects.filter(user=admin_user, title__endswith="succeeded").count() == 1
    assert AuditEntry.objects.filter(action="canary.promote", details__forced=False).exists()


def test_two_of_three_healthy_meets_66_percent_but_not_100(three, operator_user):
    # The canary is the whole scope here, so meeting the threshold ends it: nothing is left to roll out.
    for threshold, expected in ((66, Phase.SUCCEEDED), (100, Phase.EVALUATION)):
        CanaryDeployment.objects.all().delete()
        three[2].server.mode = "ok"
        deployment = start(operator_user, percentage=100, success_threshold=threshold)
        to_evaluation(deployment)
        three[2].server.mode = "fail"
        assert advance(deployment) == expected, threshold
        last = EvaluationRound.objects.filter(deployment=deployment).last()
        assert (last.passing, last.total, last.healthy_share) == (2, 3, 66.7)


def test_consecutive_healthy_polls_delay_promotion_until_reached(three, operator_user):
    deployment = start(operator_user, percentage=33, consecutive_healthy=3)
    to_evaluation(deployment)
    now = timezone.now()
    assert advance(deployment, now) == Phase.EVALUATION
    assert advance(deployment, now + timedelta(seconds=1)) == Phase.EVALUATION
    assert advance(deployment, now + timedelta(seconds=2)) == Phase.ROLLOUT
    assert deployment.poll_round == 3


def test_a_round_that_is_not_due_does_nothing_and_no_round_runs_twice(three, operator_user):
    deployment = start(operator_user, percentage=33, consecutive_healthy=2, check_interval=10, max_duration=60)
    to_evaluation(deployment)
    now = timezone.now()
    advance(deployment, now)
    advance(deployment, now)  # same moment: round 2 is not due for 10 s
    assert deployment.poll_round == 1
    assert HealthPoll.objects.filter(deployment=deployment).count() == 1


# --- Auto-rollback ----------------------------------------------------------------------------


def test_not_meeting_the_threshold_within_max_duration_rolls_back_the_exact_change(
    three, operator_user, admin_user, django_capture_on_commit_callbacks
):
    deployment = start(operator_user, percentage=66)  # web-1, web-2
    runs = canary_runs(deployment)
    to_evaluation(deployment)
    three[1].server.mode = "fail"
    assert advance(deployment) == Phase.EVALUATION  # 1 of 2: not met, deadline not reached
    with django_capture_on_commit_callbacks(execute=True):
        assert advance(deployment, deployment.deadline_at) == Phase.ROLLBACK
    assert "The success threshold was not met within the max duration (30 s)" in deployment.failure_reason
    assert "1 of 2 canary instances passed (50 %)" in deployment.failure_reason
    assert deployment.failure_details == {"web-2": ["health_check: HTTP 500"]}
    assert deployment.rollout_command is None
    # Exactly the inverse of each canary run: web-app back to 1.0, one command per canary instance.
    reverts = Command.objects.filter(source=CommandSource.ROLLBACK)
    assert sorted((c.kind, c.params["version"], c.runs.get().instance.name) for c in reverts) == [
        ("update_app", "1.0", "web-1"),
        ("update_app", "1.0", "web-2"),
    ]
    assert {c.inverse_of_id for c in reverts} == {runs[0].command_id}
    note = Notification.objects.get(user=admin_user)
    assert note.level == "critical" and "web-2: health_check: HTTP 500" in note.body
    assert "The rollout will not happen." in note.body
    # ...and by email, once the rollback is committed.
    (email,) = [m for m in mail.outbox if "rolling back" in m.subject]
    assert email.to == [admin_user.email] and "web-2: health_check: HTTP 500" in email.body
    assert AuditEntry.objects.filter(action="canary.rollback", details__forced=False).exists()


def test_rollback_then_verifies_health_and_records_the_instances_recovered(three, operator_user, admin_user):
    deployment = start(operator_user, percentage=33)
    to_evaluation(deployment)
    three[0].server.mode = "fail"
    assert advance(deployment, deployment.deadline_at) == Phase.ROLLBACK
    assert advance(deployment) == Phase.ROLLBACK  # revert not done yet
    revert = CommandRun.objects.get(command__source=CommandSource.ROLLBACK)
    agent_finishes([revert])
    three[0].server.mode = "ok"
    assert advance(deployment, timezone.now() + timedelta(seconds=5)) == Phase.ROLLED_BACK
    assert deployment.rollback_verified is True
    assert deployment.rollback_note.startswith("Rollback verified")
    assert HealthPoll.objects.filter(deployment=deployment, purpose=PollPurpose.VERIFICATION, healthy=True).count() == 1


def test_rollback_not_verified_when_the_instances_stay_unhealthy(three, operator_user, settings):
    settings.CANARY_VERIFY_ROUNDS = 2
    deployment = start(operator_user, percentage=33)
    to_evaluation(deployment)
    three[0].server.mode = "fail"
    advance(deployment, deployment.deadline_at)
    agent_finishes([CommandRun.objects.get(command__source=CommandSource.ROLLBACK)])
    later = deployment.deadline_at + timedelta(seconds=5)
    assert advance(deployment, later) == Phase.ROLLBACK
    assert advance(deployment, later + timedelta(seconds=2)) == Phase.ROLLED_BACK
    assert deployment.rollback_verified is False
    assert (
        "Rollback not verified: after 2 checks 1 of 1 still fail (web-1: health_check: HTTP 500)"
        in deployment.rollback_note
    )


def test_a_revert_that_fails_ends_the_deployment_failed(three, operator_user):
    deployment = start(operator_user, percentage=33)
    to_evaluation(deployment)
    three[0].server.mode = "fail"
    advance(deployment, deployment.deadline_at)
    agent_finishes(
        [CommandRun.objects.get(command__source=CommandSource.ROLLBACK)], status=RunStatus.FAILED, error="disk full"
    )
    assert advance(deployment) == Phase.FAILED
    assert deployment.rollback_verified is False
    assert "web-1: disk full" in deployment.rollback_note


def test_a_failed_canary_run_fails_fast_and_is_not_reverted(three, operator_user):
    deployment = start(operator_user, percentage=33)
    agent_finishes(canary_runs(deployment), status=RunStatus.FAILED, error="package not found")
    assert advance(deployment) == Phase.EVALUATION
    assert advance(deployment) == Phase.ROLLBACK  # the first round: it can never pass, so no waiting
    assert deployment.decided_at < deployment.deadline_at
    assert "can no longer be met within the max duration (30 s)" in deployment.failure_reason
    assert deployment.failure_details == {"web-1": ["change: the command failed (package not found)"]}
    target = deployment.targets.get(role=TargetRole.CANARY)
    assert target.revert_command is None
    assert target.revert_note == "The change failed on this instance, so there is nothing to revert."


def test_canary_runs_not_applied_by_the_deadline_roll_back(three, operator_user):
    deployment = start(operator_user, percentage=33)
    assert advance(deployment, deployment.deadline_at) == Phase.ROLLBACK
    assert "not applied to every instance of the canary group within the max duration" in deployment.failure_reason


def test_rollback_reverts_only_the_deployed_change_not_independent_ones(three, operator_user):
    deployment = start(operator_user, percentage=33)
    to_evaluation(deployment)
    # Someone else changes a setting on the canary instance meanwhile: the rollback must leave it alone.
    from fleet.scopes import Scope
    from fleet.services import command_create

    command_create(
        actor=operator_user,
        kind="set_config",
        params={"values": {"ssh.password_auth": False}},
        scope=Scope(kind="instances", instance_ids=(three[0].pk,)),
    )
    services.canary_rollback(actor=operator_user, deployment=deployment)
    reverts = Command.objects.filter(source=CommandSource.ROLLBACK)
    assert [(c.kind, c.params) for c in reverts] == [("update_app", {"app": "web-app", "version": "1.0"})]


def test_a_new_violation_fails_the_no_new_violations_criterion(three, operator_user):
    before = open_violation(three[0], "required_apps", "monitoring")  # already open before: not new
    deployment = start(operator_user, percentage=33, criteria=[Criterion.NO_NEW_VIOLATIONS])
    assert deployment.violations_baseline == {str(three[0].pk): [f"{before.policy_id}:monitoring"]}
    to_evaluation(deployment)
    new = open_violation(three[0], "blocked_apps", "telnet")
    assert advance(deployment, deployment.deadline_at) == Phase.ROLLBACK
    assert deployment.failure_details == {"web-1": [f"no_new_violations: new {new.policy_id}:telnet"]}


def test_violations_that_cannot_be_read_fail_the_round_never_pass_it(three, operator_user, monkeypatch):
    from canary.services import preflight

    deployment = start(operator_user, percentage=33, criteria=[Criterion.NO_NEW_VIOLATIONS])
    to_evaluation(deployment)

    def down(ids):
        raise RuntimeError("database of violations unreachable")

    monkeypatch.setattr(preflight, "open_violation_keys", down)
    assert advance(deployment) == Phase.EVALUATION
    poll = HealthPoll.objects.get(deployment=deployment)
    assert not poll.healthy and "could not be checked (database of violations unreachable)" in poll.reason


def test_a_rollout_failing_within_the_threshold_ends_failed_listing_each_instance_once(three, operator_user):
    deployment = start(operator_user, percentage=33, success_threshold=66)
    to_evaluation(deployment)
    advance(deployment)
    runs = list(deployment.rollout_command.runs.select_related("instance").order_by("instance__name"))
    agent_finishes(runs[:1])
    agent_finishes(runs[1:], status=RunStatus.FAILED, error="dependency conflict")
    assert advance(deployment) == Phase.ROLLOUT
    assert advance(deployment) == Phase.FAILED  # 2 of 3 meet 66 %: no rollback, but not a success either
    assert deployment.failure_reason == "The rollout failed on 1 of 2 instances; each is listed with its error."
    assert deployment.failure_details == {"web-3": ["rollout: dependency conflict"]}
    assert not Command.objects.filter(source=CommandSource.ROLLBACK).exists()


def test_a_rollout_failing_past_the_threshold_rolls_back_every_instance_the_change_reached(three, operator_user):
    deployment = start(operator_user, percentage=33)
    to_evaluation(deployment)
    advance(deployment)
    runs = list(deployment.rollout_command.runs.select_related("instance").order_by("instance__name"))
    agent_finishes(runs[:1], status=RunStatus.FAILED, error="dependency conflict")
    # The next round watches every instance whose run finished: web-1 (the canary) and web-2 (failed).
    assert advance(deployment, timezone.now() + timedelta(seconds=1)) == Phase.ROLLBACK
    assert "Step 2 (rollout): Health failed past the threshold during the rollout" in deployment.failure_reason
    assert deployment.failure_details == {"web-2": ["change: the command failed (dependency conflict)"]}
    reverted = sorted(c.runs.get().instance.name for c in Command.objects.filter(source=CommandSource.ROLLBACK))
    # web-2's run failed (nothing to revert); web-3's is still pending: its revert is queued behind it.
    assert reverted == ["web-1", "web-3"]


# --- Forced promote / rollback ------------------------------------------------------------------


def _in_phase(phase, fleet, actor):
    deployment = start(actor, percentage=33)
    if phase == Phase.CANARY:
        return deployment
    to_evaluation(deployment)
    if phase == Phase.EVALUATION:
        return deployment
    if phase in (Phase.ROLLOUT, Phase.SUCCEEDED):
        services.canary_promote(actor=actor, deployment=deployment)
        advance(deployment)  # sends the rollout
        if phase == Phase.SUCCEEDED:
            agent_finishes(list(deployment.rollout_command.runs.all()))
            advance(deployment)
        return deployment
    services.canary_rollback(actor=actor, deployment=deployment)
    if phase == Phase.ROLLED_BACK:
        agent_finishes(list(CommandRun.objects.filter(command__source=CommandSource.ROLLBACK)))
        advance(deployment, timezone.now() + timedelta(seconds=5))
    return deployment


@pytest.mark.parametrize("phase", [Phase.CANARY, Phase.EVALUATION])
def test_an_operator_can_force_promote_during_canary_and_evaluation(three, operator_user, phase):
    deployment = _in_phase(phase, three, operator_user)
    services.canary_promote(actor=operator_user, deployment=deployment)
    assert deployment.phase == Phase.ROLLOUT and deployment.forced
    assert AuditEntry.objects.filter(action="canary.promote", actor=operator_user, details__forced=True).exists()


@pytest.mark.parametrize("phase", [Phase.CANARY, Phase.EVALUATION])
def test_an_operator_can_force_rollback_during_canary_and_evaluation(three, operator_user, phase):
    deployment = _in_phase(phase, three, operator_user)
    services.canary_rollback(actor=operator_user, deployment=deployment, reason="error rate up")
    assert deployment.phase == Phase.ROLLBACK and deployment.forced
    assert deployment.failure_reason == "Rolled back by oscar: error rate up"


@pytest.mark.parametrize(
    ("phase", "reason"),
    [
        (Phase.ROLLBACK, "it is already rolling back"),
        (Phase.SUCCEEDED, "it already succeeded"),
        (Phase.ROLLED_BACK, "it was rolled back"),
    ],
)
def test_promote_and_rollback_are_conflicts_once_decided(three, operator_user, phase, reason):
    deployment = _in_phase(phase, three, operator_user)
    assert deployment.phase == phase
    with pytest.raises(ConflictError, match=reason):
        services.canary_promote(actor=operator_user, deployment=deployment)
    with pytest.raises(ConflictError, match=reason):
        services.canary_rollback(actor=operator_user, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.phase == phase


def test_a_rollout_cannot_be_promoted_again_but_can_be_rolled_back(three, operator_user):
    deployment = _in_phase(Phase.ROLLOUT, three, operator_user)
    with pytest.raises(ConflictError, match="it is already rolling out"):
        services.canary_promote(actor=operator_user, deployment=deployment)
    services.canary_rollback(actor=operator_user, deployment=deployment, reason="latency up")
    assert deployment.phase == Phase.ROLLBACK


def test_a_stale_copy_cannot_transition_twice(three, operator_user):
    deployment = start(operator_user, percentage=33)
    stale = CanaryDeployment.objects.get(pk=deployment.pk)
    services.canary_promote(actor=operator_user, deployment=deployment)
    stale.phase = Phase.CANARY  # what a second worker still believes
    with pytest.raises(ConflictError, match="already rolling out"):
        transitions.transition(stale, Phase.EVALUATION)
    advance(deployment)
    assert Command.objects.filter(source=CommandSource.CANARY).count() == 2  # canary + one rollout


# --- Scheduling -----------------------------------------------------------------------------


def test_a_finished_run_makes_its_deployment_due_now(three, operator_user):
    deployment = start(operator_user, percentage=33)
    CanaryDeployment.objects.filter(pk=deployment.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    run = canary_runs(deployment)[0]
    command_run_finished.send(sender=CommandRun, run_id=run.pk, status=RunStatus.COMPLETED)
    deployment.refresh_from_db()
    assert deployment.next_poll_at <= timezone.now()
    assert services.due_deployment_ids() == [deployment.pk]


def test_the_beat_task_hands_each_due_deployment_to_its_own_task(three, operator_user, monkeypatch):
    from canary import tasks

    deployment = start(operator_user, percentage=33)
    CanaryDeployment.objects.filter(pk=deployment.pk).update(next_poll_at=timezone.now() - timedelta(seconds=2))
    sent = []
    monkeypatch.setattr(tasks.advance_deployment, "apply_async", lambda args, **kw: sent.append(args))
    assert tasks.advance_due_deployments() == 1  # overdue: its own task was lost (e.g. with a killed worker)
    assert sent == [[deployment.pk]]
    CanaryDeployment.objects.filter(pk=deployment.pk).update(next_poll_at=timezone.now())
    assert tasks.advance_due_deployments() == 0  # due now: its own task, enqueued for this time, runs it
    agent_finishes(canary_runs(deployment))
    assert tasks.advance_deployment(deployment.pk) == Phase.EVALUATION


def test_the_management_command_advances_due_deployments(three, operator_user):
    from io import StringIO

    from django.core.management import call_command

    deployment = start(operator_user, percentage=33)
    agent_finishes(canary_runs(deployment))
    CanaryDeployment.objects.filter(pk=deployment.pk).update(next_poll_at=timezone.now())
    out = StringIO()
    call_command("canary_advance", stdout=out)
    assert out.getvalue() == f"canary #{deployment.pk}: evaluation\n"


def test_an_instance_without_a_health_address_is_excluded_with_the_reason(make_fleet, canary_license, operator_user):
    fleet = make_fleet(3)
    fleet[0].address = ""
    fleet[0].save()
    deployment = start(operator_user, percentage=33)
    excluded = deployment.targets.get(excluded=True)
    assert (excluded.instance.name, excluded.exclusion_reason) == (
        "web-1",
        "unhealthy before the change: the instance has no health address",
    )


def test_the_first_round_is_due_the_moment_the_canary_is_applied_and_the_rest_on_its_grid(three, operator_user):
    deployment = start(operator_user, percentage=33, consecutive_healthy=4, check_interval=7, max_duration=60)
    to_evaluation(deployment)
    anchor = deployment.evaluation_started_at
    assert deployment.next_round_at == anchor  # at once, not a scheduler tick later
    advance(deployment, anchor + timedelta(seconds=0.01))
    advance(deployment, anchor + timedelta(seconds=7.01))
    advance(deployment, anchor + timedelta(seconds=15.5))  # a late worker: the slot at 14 s, none bunched
    assert advance(deployment, anchor + timedelta(seconds=15.6)) == Phase.EVALUATION  # 21 s is not due yet
    due = list(
        EvaluationRound.objects.filter(deployment=deployment).order_by("number").values_list("due_at", flat=True)
    )
    assert [(d - anchor).total_seconds() for d in due] == [0, 7, 14]
    assert deployment.next_round_at == anchor + timedelta(seconds=21)


def test_a_failing_canary_is_decided_by_the_last_grid_round_at_or_before_its_max_duration(three, operator_user):
    deployment = start(operator_user, percentage=33, check_interval=7, max_duration=20)
    to_evaluation(deployment)
    three[0].server.mode = "fail"
    anchor = deployment.evaluation_started_at
    assert advance(deployment, anchor + timedelta(seconds=0.01)) == Phase.EVALUATION
    assert advance(deployment, anchor + timedelta(seconds=7.01)) == Phase.EVALUATION
    # The round at 14 s is the last on the grid before the 20 s deadline (21 s is past it): it decides.
    assert advance(deployment, anchor + timedelta(seconds=14.01)) == Phase.ROLLBACK
    assert deployment.decided_at == anchor + timedelta(seconds=14.01)
    assert deployment.decided_at <= deployment.deadline_at < deployment.decided_at + timedelta(seconds=7)
    assert deployment.poll_round == 3
    assert "The success threshold was not met within the max duration (20 s)" in deployment.failure_reason
    assert deployment.failure_details == {"web-1": ["health_check: HTTP 500"]}


def test_each_round_is_enqueued_for_its_own_due_time_not_a_scheduler_tick(
    three, operator_user, monkeypatch, django_capture_on_commit_callbacks
):
    from canary import tasks

    deployment = start(operator_user, percentage=33, consecutive_healthy=3, check_interval=7, max_duration=60)
    to_evaluation(deployment)
    # This look is the task whose slot has come (the one the previous look enqueued, a few ms from now).
    CanaryDeployment.objects.filter(pk=deployment.pk).update(next_poll_at=deployment.evaluation_started_at)
    sent = []
    monkeypatch.setattr(tasks.advance_deployment, "apply_async", lambda args, **kw: sent.append((args, kw)))
    with django_capture_on_commit_callbacks(execute=True):
        advance(deployment, deployment.evaluation_started_at + timedelta(seconds=0.01))  # round 1
    due = deployment.evaluation_started_at + timedelta(seconds=7)
    assert deployment.next_poll_at == due
    ((args, options),) = sent  # one task, after the commit, for exactly the next grid time
    assert args == [deployment.pk]
    assert options["eta"] == due and options["kwargs"] == {"due": due.timestamp()}
    with django_capture_on_commit_callbacks(execute=True):
        services.canary_advance(deployment_id=deployment.pk, now=deployment.evaluation_started_at)  # not due
    assert len(sent) == 1  # its slot is already taken by that task: none piles up
