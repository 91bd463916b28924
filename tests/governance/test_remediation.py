"""Enforce mode on the database: the tick queues fixes through the command queue within the budget and
window, settles attempts from their runs, gives up after K attempts with backoff, and the breaker pauses."""

from datetime import time, timedelta

import pytest
from django.utils import timezone

from common.models import Notification
from fleet.choices import CommandSource, RunStatus
from fleet.models import Command, CommandRun, Instance
from fleet.services import agent_commands_fetch, command_run_report
from governance import services
from governance.choices import ViolationStatus
from governance.models import RemediationAttempt, RemediationSettings, Violation
from governance.remediation.rails import remediation_resume, remediation_update
from governance.remediation.services import remediate_policy, remediation_preview, status_of

from .conftest import make_policy

pytestmark = pytest.mark.django_db

AGENT = {"apps": [{"name": "monitoring-agent", "min_version": "2.4.0", "running": False}]}


@pytest.fixture
def enforced(admin_user, make_instance):
    """Six instances without monitoring-agent; a required-apps policy in enforce mode, 2 at once."""
    for _ in range(6):
        make_instance(apps=[("nginx", "1.24.0")])
    policy = make_policy(admin_user, rules=AGENT)
    remediation_update(
        actor=admin_user,
        policy=policy,
        data={"mode": "enforce", "max_instances": 2, "max_per_hour": None, "backoff_seconds": 60},
    )
    policy.refresh_from_db()
    assert Violation.objects.filter(policy=policy, status=ViolationStatus.OPEN).count() == 6
    return policy


def agent_finishes(instance: Instance, *, ok=True, apply=True):
    """What an agent does: fetch its runs, apply them to its state, report; then the heartbeat's evaluation."""
    for run in agent_commands_fetch(instance=instance):
        if ok and apply:
            instance.refresh_from_db()
            apps = [a for a in instance.apps if a["name"] != run.command.params["app"]]
            apps.append({"name": run.command.params["app"], "version": run.command.params["version"], "running": True})
            Instance.objects.filter(pk=instance.pk).update(apps=apps)
        command_run_report(
            instance=instance,
            run_id=run.pk,
            status=RunStatus.COMPLETED if ok else RunStatus.FAILED,
            error="" if ok else "apt-get: unable to locate package",
        )
    services.evaluate_instances(instance_ids=[instance.pk])


def test_an_enforced_policy_queues_one_install_per_violation_within_the_budget(enforced):
    summary = remediate_policy(policy_id=enforced.pk)
    assert summary["queued"] == 2
    commands = Command.objects.filter(source=CommandSource.REMEDIATION)
    assert commands.count() == 2
    assert {(c.kind, tuple(sorted(c.params.items()))) for c in commands} == {
        ("install_app", (("app", "monitoring-agent"), ("version", "2.4.0")))
    }
    assert CommandRun.objects.filter(command__in=commands).count() == 2
    # The two in flight use the whole budget: a second round queues nothing more.
    assert remediate_policy(policy_id=enforced.pk)["queued"] == 0
    assert RemediationAttempt.objects.count() == 2


def test_a_completed_fix_resolves_its_violation_and_the_attempt_says_fixed(enforced):
    remediate_policy(policy_id=enforced.pk)
    attempt = RemediationAttempt.objects.first()
    agent_finishes(attempt.instance)
    remediate_policy(policy_id=enforced.pk)
    attempt.refresh_from_db()
    assert attempt.outcome == "fixed"
    assert attempt.violation.status == ViolationStatus.RESOLVED
    assert attempt.run.status == RunStatus.COMPLETED
    # Its slot is free again: the next instance gets its fix.
    assert RemediationAttempt.objects.filter(outcome="pending").count() == 2


def test_the_whole_fleet_is_fixed_round_by_round_never_more_than_the_budget_at_once(enforced):
    for _ in range(10):
        remediate_policy(policy_id=enforced.pk)
        pending = RemediationAttempt.objects.filter(outcome="pending")
        assert pending.values("instance").distinct().count() <= 2
        for attempt in list(pending):
            agent_finishes(attempt.instance)
    assert not Violation.objects.filter(policy=enforced, status=ViolationStatus.OPEN).exists()
    assert RemediationAttempt.objects.filter(outcome="fixed").count() == 6
    assert Command.objects.filter(source=CommandSource.REMEDIATION).count() == 6


def test_the_hourly_budget_stops_further_starts(enforced, admin_user):
    remediation_update(actor=admin_user, policy=enforced, data={"max_instances": None, "max_per_hour": 3})
    remediate_policy(policy_id=enforced.pk)
    for attempt in RemediationAttempt.objects.all():
        agent_finishes(attempt.instance)
    assert remediate_policy(policy_id=enforced.pk)["queued"] == 0
    assert RemediationAttempt.objects.count() == 3
    later = timezone.now() + timedelta(hours=1, minutes=1)
    assert remediate_policy(policy_id=enforced.pk, now=later)["queued"] == 3


def test_nothing_is_queued_outside_the_maintenance_window(enforced, admin_user):
    now = timezone.now()
    start = (now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    remediation_update(
        actor=admin_user, policy=enforced, data={"window_start": start.isoformat(), "window_end": end.isoformat()}
    )
    assert remediate_policy(policy_id=enforced.pk, now=now)["skipped"] == "outside the maintenance window"
    assert not Command.objects.exists()
    assert remediate_policy(policy_id=enforced.pk, now=now + timedelta(hours=2, minutes=5))["queued"] == 2
    status = status_of(enforced, now=now)
    assert status["window_open"] is False and status["next_window"] > now


def test_an_audit_policy_is_never_remediated(admin_user, make_instance):
    make_instance(apps=[])
    policy = make_policy(admin_user, rules=AGENT)
    assert remediate_policy(policy_id=policy.pk)["skipped"] == "not enforcing"
    assert not Command.objects.exists()


def test_a_failing_fix_is_retried_after_the_backoff_at_most_k_times(admin_user, make_instance):
    inst = make_instance(apps=[])
    policy = make_policy(admin_user, rules=AGENT)
    remediation_update(
        actor=admin_user,
        policy=policy,
        data={"mode": "enforce", "max_attempts": 3, "backoff_seconds": 60, "breaker_min_attempts": 100},
    )
    now = timezone.now()
    remediate_policy(policy_id=policy.pk, now=now)
    agent_finishes(inst, ok=False)
    # Settled as failed; the next try waits for the backoff (60 s after the first failure).
    assert remediate_policy(policy_id=policy.pk, now=now + timedelta(seconds=30))["queued"] == 0
    assert RemediationAttempt.objects.get(number=1).outcome == "failed"
    assert "unable to locate package" in RemediationAttempt.objects.get(number=1).error
    assert remediate_policy(policy_id=policy.pk, now=now + timedelta(seconds=70))["queued"] == 1
    agent_finishes(inst, ok=False)
    # Attempt 2 failed: 120 s of backoff now.
    second_failed = RemediationAttempt.objects.get(number=2).finished_at
    assert remediate_policy(policy_id=policy.pk, now=second_failed + timedelta(seconds=100))["queued"] == 0
    assert remediate_policy(policy_id=policy.pk, now=second_failed + timedelta(seconds=130))["queued"] == 1
    agent_finishes(inst, ok=False)
    assert remediate_policy(policy_id=policy.pk, now=now + timedelta(days=1))["queued"] == 0
    assert list(RemediationAttempt.objects.order_by("number").values_list("number", "outcome")) == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]


def test_the_breaker_pauses_the_policy_and_notifies_the_admins_once(enforced, admin_user):
    remediation_update(actor=admin_user, policy=enforced, data={"breaker_percent": 50, "breaker_min_attempts": 3})
    for _ in range(3):
        remediate_policy(policy_id=enforced.pk)
        for attempt in RemediationAttempt.objects.filter(outcome="pending"):
            agent_finishes(attempt.instance, ok=False)
    summary = remediate_policy(policy_id=enforced.pk)
    assert summary["skipped"] == "paused"
    rails = RemediationSettings.objects.get(pk=enforced.pk)
    assert rails.paused_at is not None and "failed in the last hour" in rails.pause_reason
    notes = Notification.objects.filter(user=admin_user, title__contains="paused")
    assert notes.count() == 1
    queued = Command.objects.count()
    remediate_policy(policy_id=enforced.pk, now=timezone.now() + timedelta(hours=3))
    assert Command.objects.count() == queued  # paused stays paused, however long
    assert notes.count() == 1
    remediation_resume(actor=admin_user, policy=enforced)
    assert remediate_policy(policy_id=enforced.pk, now=timezone.now() + timedelta(hours=3))["queued"] > 0


def test_the_preview_lists_the_commands_and_instances_without_queuing_anything(enforced):
    result = remediation_preview(
        policy_type=enforced.policy_type, rules=enforced.rules, scope=enforced.scope, policy=enforced
    )
    assert result["instances"] == 6
    assert [(c["command"], c["count"]) for c in result["commands"]] == [("install_app monitoring-agent → 2.4.0", 6)]
    assert not Command.objects.exists()


def test_settings_errors_name_every_field_and_nothing_is_saved(enforced, admin_user):
    from common.exceptions import ApplicationError

    with pytest.raises(ApplicationError) as err:
        remediation_update(
            actor=admin_user,
            policy=enforced,
            data={
                "mode": "fix",
                "max_percent": 101,
                "window_days": [7],
                "window_start": "25:00",
                "window_timezone": "Mars/Olympus",
                "max_attempts": 0,
            },
        )
    assert set(err.value.errors) >= {"mode", "max_percent", "window_days", "window_start", "window_timezone"}
    rails = RemediationSettings.objects.get(pk=enforced.pk)
    assert rails.max_instances == 2 and rails.max_percent is None and rails.window_timezone == "UTC"


def test_window_time_given_as_time_is_kept(enforced, admin_user):
    remediation_update(
        actor=admin_user, policy=enforced, data={"window_start": time(1), "window_end": time(5), "window_days": [0, 0]}
    )
    rails = RemediationSettings.objects.get(pk=enforced.pk)
    assert (rails.window_start, rails.window_end, rails.window_days) == (time(1), time(5), [0])


def test_a_fix_the_command_queue_refuses_is_a_failed_attempt_with_the_reason(admin_user, make_instance):
    make_instance(apps=[("Legacy_Tool", "1.0")])  # an agent reported a name no command accepts
    fine = make_instance(apps=[("legacy-tool", "1.0")])
    policy = make_policy(
        admin_user, name="No legacy", policy_type="blocked_apps", rules={"apps": [{"pattern": "*egacy*"}]}
    )
    remediation_update(actor=admin_user, policy=policy, data={"mode": "enforce"})
    assert remediate_policy(policy_id=policy.pk)["queued"] == 1
    refused = RemediationAttempt.objects.get(outcome="failed")
    assert "refused the fix" in refused.error and "'app' must be an app name" in refused.error
    queued = RemediationAttempt.objects.get(outcome="pending")
    assert queued.instance_id == fine.pk and queued.command.kind == "uninstall_app"


def test_a_round_costs_the_same_queries_for_three_fixes_as_for_twelve(admin_user, make_instance):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def round_queries(count, name):
        for _ in range(count):
            make_instance(apps=[])
        policy = make_policy(admin_user, name=name, rules=AGENT, scope=None)
        remediation_update(actor=admin_user, policy=policy, data={"mode": "enforce", "max_instances": 100})
        Violation.objects.exclude(policy=policy).delete()
        with CaptureQueriesContext(connection) as queries:
            assert remediate_policy(policy_id=policy.pk)["queued"] == Violation.objects.filter(policy=policy).count()
        services.policy_disable(actor=admin_user, policy=policy)
        Violation.objects.all().delete()
        Instance.objects.all().delete()
        return len(queries)

    assert round_queries(3, "Three") == round_queries(12, "Twelve")
