"""Enforce mode end to end: simulated agents on a live server, a real Celery worker and beat on Redis and
PostgreSQL. After the policy is switched to enforce nothing is called by hand: heartbeats are evaluated
by the worker, beat's remediation tick queues fixes, the agents apply them (or fail), canaries decide."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from canary.choices import Phase
from canary.models import CanaryDeployment
from common.models import Notification
from fleet.choices import CommandSource
from fleet.models import Command, Instance
from governance.choices import ViolationStatus
from governance.models import RemediationAttempt, RemediationSettings, Violation
from governance.remediation.rails import remediation_update
from tests.conftest import wait_for
from tests.governance.conftest import make_policy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("postgres_required")]

AUDITD = {"apps": [{"name": "audit-daemon", "min_version": "3.1.0", "running": False}]}


@pytest.fixture(autouse=True)
def _real_broker():
    """Unlike the rest of tests/governance, every task here goes through Redis to the real worker."""
    from config.celery import app

    app.conf.task_always_eager = False
    yield


@pytest.fixture
def stack(simulated_fleet, celery_worker_factory):
    sim = simulated_fleet(count=6, heartbeat_interval=0.5, command_poll_interval=0.3)
    celery_worker_factory()
    celery_worker_factory(beat=True, extra_env={"REMEDIATION_TICK_SECONDS": "1"})
    wait_for(lambda: Instance.objects.filter(status="online").count() == 6, timeout=30, message="6 online")
    return sim


def auditd(instance: Instance):
    apps = Instance.objects.get(pk=instance.pk).apps
    return next((a["version"] for a in apps if a["name"] == "audit-daemon"), None)


def open_violations(policy):
    return Violation.objects.filter(policy=policy, status=ViolationStatus.OPEN)


def max_overlap(attempts) -> int:
    """The most attempts in flight at one moment, from their recorded start and finish."""
    events = []
    for a in attempts:
        events += [(a.created, 1), (a.finished_at or timezone.now(), -1)]
    level = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


def test_enforce_mode_fixes_the_fleet_within_the_budget_and_only_once_the_window_opens(stack, admin_user):
    policy = make_policy(admin_user, name="Audit daemon", rules=AUDITD)
    wait_for(lambda: open_violations(policy).count() == 6, timeout=30, message="6 violations")
    now = timezone.now()
    closed = {
        "window_start": (now + timedelta(hours=3)).strftime("%H:%M"),
        "window_end": (now + timedelta(hours=4)).strftime("%H:%M"),
    }
    remediation_update(
        actor=admin_user,
        policy=policy,
        data={"mode": "enforce", "max_instances": 2, "max_per_hour": None, "backoff_seconds": 5, **closed},
    )
    time.sleep(4)  # several ticks, all outside the window
    assert not Command.objects.filter(source=CommandSource.REMEDIATION).exists()
    remediation_update(actor=admin_user, policy=policy, data={"window_start": None, "window_end": None})
    wait_for(lambda: not open_violations(policy).exists(), timeout=90, message="every violation fixed")
    assert all(auditd(i) == "3.1.0" for i in Instance.objects.all())
    attempts = list(RemediationAttempt.objects.filter(policy=policy))
    assert len(attempts) == 6
    assert max_overlap(attempts) <= 2
    wait_for(
        lambda: RemediationAttempt.objects.filter(policy=policy, outcome="fixed").count() == 6,
        timeout=30,
        message="every attempt marked fixed",
    )
    assert all(a.created >= now for a in attempts)


def test_failing_commands_trip_the_breaker_which_pauses_and_notifies(stack, admin_user):
    for inst in stack.instances:
        stack.fail_commands(inst.name)
    policy = make_policy(admin_user, name="Audit daemon", rules=AUDITD)
    wait_for(lambda: open_violations(policy).count() == 6, timeout=30, message="6 violations")
    remediation_update(
        actor=admin_user,
        policy=policy,
        data={"mode": "enforce", "max_instances": 3, "breaker_percent": 50, "breaker_min_attempts": 3},
    )
    wait_for(
        lambda: RemediationSettings.objects.filter(pk=policy.pk, paused_at__isnull=False).exists(),
        timeout=60,
        message="the breaker to trip",
    )
    rails = RemediationSettings.objects.get(pk=policy.pk)
    assert "failed in the last hour" in rails.pause_reason
    assert Notification.objects.filter(user=admin_user, title=f"Remediation of {policy.name} paused").count() == 1
    failed = RemediationAttempt.objects.filter(policy=policy, outcome="failed")
    assert failed.count() >= 3 and "simulated failure" in failed.first().error
    queued = Command.objects.filter(source=CommandSource.REMEDIATION).count()
    time.sleep(3)  # ticks keep coming; a paused policy queues nothing
    assert Command.objects.filter(source=CommandSource.REMEDIATION).count() == queued
    assert open_violations(policy).count() == 6


def test_remediation_through_a_canary_that_breaks_health_rolls_back(enterprise_license, stack, admin_user):
    # The license first: the worker reads its public key from the environment it starts with.
    broken = {"apps": [{"name": "web-app", "min_version": "2.0+fail", "running": False}]}
    policy = make_policy(admin_user, name="Web app", rules=broken)
    wait_for(lambda: open_violations(policy).count() == 6, timeout=30, message="6 violations")
    remediation_update(
        actor=admin_user,
        policy=policy,
        data={
            "mode": "enforce",
            "max_instances": 6,
            "use_canary": True,
            "canary_percentage": 50,
            "canary_criteria": ["online", "health_check"],
            "canary_check_interval": 1,
            "canary_max_duration": 15,
            "max_attempts": 1,
        },
    )
    wait_for(lambda: CanaryDeployment.objects.exists(), timeout=30, message="the canary deployment")
    deployment = CanaryDeployment.objects.get()
    assert deployment.command_kind == "install_app" and deployment.command_params["version"] == "2.0+fail"
    wait_for(
        lambda: CanaryDeployment.objects.filter(pk=deployment.pk, phase=Phase.ROLLED_BACK).exists(),
        timeout=120,
        message="the rollback",
    )
    wait_for(
        lambda: RemediationAttempt.objects.filter(policy=policy, outcome="rolled_back").count() == 6,
        timeout=30,
        message="attempts rolled back",
    )
    wait_for(lambda: all(auditd_free(i) for i in Instance.objects.all()), timeout=30, message="web-app removed again")
    canary_attempts = RemediationAttempt.objects.filter(policy=policy, run__isnull=False)
    assert canary_attempts.count() == 3  # the canary half got the change; the rest never did
    assert "rolled back" in canary_attempts.first().error
    # The removed app is found missing again once the worker re-evaluates those heartbeats; with
    # max_attempts=1 nothing more is tried, so all 6 stay open.
    wait_for(lambda: open_violations(policy).count() == 6, timeout=30, message="6 violations open again")
    assert not RemediationAttempt.objects.filter(policy=policy, number__gt=1).exists()


def auditd_free(instance: Instance) -> bool:
    return all(a["name"] != "web-app" for a in Instance.objects.get(pk=instance.pk).apps)
