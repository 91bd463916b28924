"""Retention: what is past its setting's horizon goes, what is current or recent stays."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from canary.models import CanaryDeployment, HealthPoll
from common import retention
from common.models import AuditEntry, Notification
from common.tasks import prune_old_records
from fleet.models import Command, CommandRun
from gitops.models import Repository, SyncRun
from governance.models import InstanceSnapshot, Violation
from tests.fleet.helpers import make_instance
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def audit(days):
    """An audit entry `days` old (auto_now_add cannot be set on create, so it is moved afterwards)."""
    row = AuditEntry.objects.create(actor_label="system", action="test")
    AuditEntry.objects.filter(pk=row.pk).update(created=NOW - timedelta(days=days))
    return row


def test_audit_entries_past_the_horizon_go_and_recent_ones_stay(settings):
    settings.AUDIT_RETENTION_DAYS = 30
    old, recent = audit(31), audit(29)
    assert retention.prune(now=NOW)["common.audit_entries"] == 1
    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AuditEntry.objects.filter(pk=old.pk).exists()


def test_zero_days_keeps_forever_and_a_dry_run_only_counts(settings):
    settings.AUDIT_RETENTION_DAYS = 0
    audit(5000)
    assert "common.audit_entries" not in retention.prune(now=NOW)
    settings.AUDIT_RETENTION_DAYS = 10
    assert retention.prune(now=NOW, dry_run=True)["common.audit_entries"] == 1
    assert AuditEntry.objects.count() == 1


def test_only_read_notifications_are_pruned(settings, admin_user):
    settings.NOTIFICATION_RETENTION_DAYS = 90
    unread = Notification.objects.create(user=admin_user, title="unread")
    read_old = Notification.objects.create(user=admin_user, title="old", read_at=NOW - timedelta(days=91))
    read_new = Notification.objects.create(user=admin_user, title="new", read_at=NOW - timedelta(days=1))
    Notification.objects.filter(pk=unread.pk).update(created=NOW - timedelta(days=400))
    retention.prune(now=NOW)
    assert set(Notification.objects.values_list("pk", flat=True)) == {unread.pk, read_new.pk}
    assert not Notification.objects.filter(pk=read_old.pk).exists()


def test_commands_go_with_their_runs_only_when_every_run_has_finished(settings):
    settings.COMMAND_RETENTION_DAYS = 90
    web = make_instance("web-1")
    done = Command.objects.create(kind="restart_app", params={"app": "nginx"})
    waiting = Command.objects.create(kind="restart_app", params={"app": "nginx"})
    recent = Command.objects.create(kind="restart_app", params={"app": "nginx"})
    CommandRun.objects.create(command=done, instance=web, status="completed", pickup_deadline=NOW)
    CommandRun.objects.create(command=waiting, instance=web, status="pending", pickup_deadline=NOW)
    CommandRun.objects.create(command=recent, instance=web, status="failed", pickup_deadline=NOW)
    Command.objects.filter(pk__in=[done.pk, waiting.pk]).update(created=NOW - timedelta(days=100))
    retention.prune(now=NOW)
    assert set(Command.objects.values_list("pk", flat=True)) == {waiting.pk, recent.pk}
    assert CommandRun.objects.count() == 2


def test_polls_of_long_finished_deployments_go_and_the_deployment_and_its_rounds_stay(settings):
    settings.CANARY_POLL_RETENTION_DAYS = 30
    web = make_instance("web-1")
    ended = CanaryDeployment.objects.create(command_kind="restart_app", finished_at=NOW - timedelta(days=31))
    running = CanaryDeployment.objects.create(command_kind="restart_app")
    for deployment in (ended, running):
        for r in range(3):
            HealthPoll.objects.create(
                deployment=deployment, instance=web, round=r, polled_at=NOW - timedelta(days=60), healthy=True
            )
    assert retention.prune(now=NOW)["canary.health_polls"] == 3
    assert set(HealthPoll.objects.values_list("deployment_id", flat=True)) == {running.pk}
    assert CanaryDeployment.objects.filter(pk=ended.pk).exists()


def test_old_sync_runs_go_but_each_repository_keeps_its_latest_twenty(settings):
    settings.GITOPS_RUN_RETENTION_DAYS = 90
    busy = Repository.objects.create(name="busy", url="git@127.0.0.1:busy.git")
    quiet = Repository.objects.create(name="quiet", url="git@127.0.0.1:quiet.git")
    for repo, count in ((busy, 25), (quiet, 3)):
        for i in range(count):
            run = SyncRun.objects.create(repository=repo, status="success", finished_at=NOW)
            SyncRun.objects.filter(pk=run.pk).update(started_at=NOW - timedelta(days=200 - i))
    unfinished = SyncRun.objects.create(repository=busy, status="running")
    SyncRun.objects.filter(pk=unfinished.pk).update(started_at=NOW - timedelta(days=300))
    assert retention.prune(now=NOW)["gitops.sync_runs"] == 5
    assert SyncRun.objects.filter(repository=busy, finished_at__isnull=False).count() == 20
    assert SyncRun.objects.filter(repository=quiet).count() == 3
    assert SyncRun.objects.filter(pk=unfinished.pk).exists()


def test_resolved_violations_and_instance_snapshots_past_the_horizon_go(settings):
    settings.VIOLATION_RETENTION_DAYS = 365
    settings.SNAPSHOT_RETENTION_DAYS = 400
    web = make_instance("web-1")
    policy = make_policy()
    common = dict(policy=policy, policy_name=policy.name, instance=web, rule="r", evidence="e", severity="high")
    long_ago = NOW - timedelta(days=500)
    old = Violation.objects.create(
        rule_key="a",
        status="resolved",
        first_detected_at=long_ago,
        last_seen_at=long_ago,
        resolved_at=long_ago,
        **common,
    )
    still_open = Violation.objects.create(
        rule_key="b", status="open", first_detected_at=long_ago, last_seen_at=NOW, **common
    )
    InstanceSnapshot.objects.create(date=(NOW - timedelta(days=401)).date(), instance=web, score=50)
    kept = InstanceSnapshot.objects.create(date=(NOW - timedelta(days=10)).date(), instance=web, score=50)
    retention.prune(now=NOW)
    assert list(Violation.objects.values_list("pk", flat=True)) == [still_open.pk]
    assert not Violation.objects.filter(pk=old.pk).exists()
    assert list(InstanceSnapshot.objects.values_list("pk", flat=True)) == [kept.pk]


def test_deletion_goes_in_batches_and_counts_every_row(settings):
    settings.AUDIT_RETENTION_DAYS = 1
    AuditEntry.objects.bulk_create([AuditEntry(actor_label="system", action="bulk") for _ in range(25)])
    AuditEntry.objects.update(created=NOW - timedelta(days=2))
    assert retention.delete_in_batches(AuditEntry.objects.filter(action="bulk"), batch=7) == 25
    assert not AuditEntry.objects.exists()


def test_the_daily_task_is_scheduled_and_prunes_and_the_command_reports(settings):
    assert settings.CELERY_BEAT_SCHEDULE["common-prune-old-records"]["task"] == "common.tasks.prune_old_records"
    settings.AUDIT_RETENTION_DAYS = 30
    audit(31)
    out = StringIO()
    call_command("prune_records", "--dry-run", stdout=out)
    assert "common.audit_entries" in out.getvalue() and "would delete 1" in out.getvalue()
    assert AuditEntry.objects.count() == 1
    prune_old_records()
    assert not AuditEntry.objects.exists()
