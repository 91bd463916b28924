"""Evaluation against the database: violation lifecycle, exemptions, stale data, scores, triggers."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.models import Notification
from fleet import services as fleet_services
from fleet.choices import InstanceStatus
from fleet.scopes import Scope
from governance import selectors, services
from governance.choices import PolicyState
from governance.models import InstanceCompliance, PolicyCompliance, ReleaseRecord, Violation
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db


def set_apps(instance, apps):
    instance.apps = [{"name": n, "version": v, "running": True} for n, v in apps]
    instance.save(update_fields=["apps"])


def test_a_violation_opens_resolves_and_comes_back_as_a_new_violation(make_instance):
    web = make_instance(apps=[])
    policy = make_policy()
    [first] = Violation.objects.filter(instance=web)
    assert (first.status, first.severity, first.evidence) == ("open", "warning", "monitoring-agent missing")

    set_apps(web, [("monitoring-agent", "1.0")])
    services.evaluate_instance(instance_id=web.pk)
    first.refresh_from_db()
    assert first.status == "resolved" and first.resolved_at is not None

    set_apps(web, [])
    services.evaluate_instance(instance_id=web.pk)
    rows = list(Violation.objects.filter(instance=web, policy=policy).order_by("pk"))
    assert [r.status for r in rows] == ["resolved", "open"]
    assert rows[1].pk != first.pk


def test_an_unchanged_evaluation_opens_updates_and_resolves_nothing(make_instance):
    make_instance(apps=[])
    make_policy()
    before = list(Violation.objects.values("pk", "evidence", "status", "first_detected_at"))
    result = services.evaluate_fleet()
    assert result["opened"] == result["updated"] == result["resolved"] == 0
    assert list(Violation.objects.values("pk", "evidence", "status", "first_detected_at")) == before


def test_score_is_policies_met_over_applicable_and_instances_without_policies_are_excluded(make_instance, group):
    scoped = make_instance(apps=[("monitoring-agent", "1")], groups=[group])
    failing = make_instance(apps=[], groups=[group])
    outside = make_instance(apps=[])
    make_policy(scope=Scope(kind="groups", group_ids=(group.pk,)))
    make_policy(
        name="No telnet",
        policy_type="blocked_apps",
        rules={"apps": [{"pattern": "telnetd"}]},
        scope=Scope(kind="groups", group_ids=(group.pk,)),
    )
    services.evaluate_fleet()
    scores = {c.instance_id: c for c in InstanceCompliance.objects.all()}
    assert scores[scoped.pk].score == 100.0
    assert (scores[failing.pk].met, scores[failing.pk].applicable, scores[failing.pk].score) == (1, 2, 50.0)
    assert scores[outside.pk].score is None  # no applicable policies: excluded
    summary = selectors.fleet_compliance()
    assert summary["average"] == 75.0 and summary["scored"] == 2 and summary["no_policies"] == 1


def test_tag_scope_covers_only_instances_with_every_tag(make_instance):
    prod_web = make_instance(apps=[], tags=["env=production", "role=web"])
    prod_db = make_instance(apps=[], tags=["env=production"])
    make_policy(scope=Scope(kind="tags", tags=("env=production", "role=web")))
    assert set(Violation.objects.values_list("instance_id", flat=True)) == {prod_web.pk}
    services.evaluate_fleet()
    assert not InstanceCompliance.objects.get(instance=prod_db).state_map


def test_an_exemption_shows_the_violation_as_exempted_and_leaves_the_score_counts(make_instance, admin_user):
    web = make_instance(apps=[])
    policy = make_policy()
    exception = services.exception_create(
        actor=admin_user,
        policy=policy,
        scope=Scope(kind="instances", instance_ids=(web.pk,)),
        justification="Agent replaced by vendor tooling this quarter",
        expires_at=timezone.now() + timedelta(days=7),
    )
    violation = Violation.objects.get(instance=web)
    assert violation.status == "exempted" and violation.exception == exception
    standing = InstanceCompliance.objects.get(instance=web)
    assert (standing.met, standing.applicable, standing.exempt, standing.score) == (0, 0, 1, None)
    assert selectors.open_violation_keys([web.pk]) == {web.pk: set()}


def test_an_expired_exemption_reopens_its_violation(make_instance, admin_user):
    web = make_instance(apps=[])
    policy = make_policy(name="Block telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    set_apps(web, [("telnetd", "0.17")])
    exception = services.exception_create(
        actor=admin_user,
        policy=policy,
        rule_key="blocked:telnetd",
        scope=Scope(kind="instances", instance_ids=(web.pk,)),
        justification="Legacy switch console until migration",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert Violation.objects.get(instance=web).status == "exempted"
    Notification.objects.all().delete()
    services.evaluate_time_based(now=timezone.now() + timedelta(hours=2))
    violation = Violation.objects.get(instance=web)
    assert violation.status == "open"
    assert Notification.objects.filter(title__contains="Critical violation").exists()
    assert exception.__class__.objects.get(pk=exception.pk).expiry_processed_at is not None


def test_a_stale_instance_is_unknown_never_compliant_and_not_scored(make_instance):
    long_gone = make_instance(
        apps=[("monitoring-agent", "1")],
        status=InstanceStatus.OFFLINE,
        last_seen_at=timezone.now() - timedelta(hours=3),
    )
    recently_offline = make_instance(
        apps=[("monitoring-agent", "1")],
        status=InstanceStatus.OFFLINE,
        last_seen_at=timezone.now() - timedelta(minutes=5),
    )
    policy = make_policy()
    stale = InstanceCompliance.objects.get(instance=long_gone)
    assert stale.stale and stale.score is None and stale.state_map == {str(policy.pk): PolicyState.UNKNOWN}
    assert InstanceCompliance.objects.get(instance=recently_offline).score == 100.0
    pc = PolicyCompliance.objects.get(policy=policy)
    assert (pc.compliant, pc.unknown) == (1, 1)


def test_a_stale_instance_keeps_its_violations_as_they_were(make_instance):
    web = make_instance(apps=[])
    make_policy()
    Violation.objects.get(instance=web)
    web.status, web.last_seen_at = InstanceStatus.OFFLINE, timezone.now() - timedelta(hours=5)
    web.apps = [{"name": "monitoring-agent", "version": "1", "running": True}]
    web.save()
    services.evaluate_fleet()
    assert Violation.objects.get(instance=web).status == "open"


def test_a_newly_opened_critical_violation_notifies_admins_once(make_instance, admin_user):
    web = make_instance(apps=[("telnetd", "0.17")])
    make_policy(name="Block telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    assert Notification.objects.filter(user=admin_user, level="critical").count() == 1
    services.evaluate_fleet()
    services.evaluate_instance(instance_id=web.pk)
    assert Notification.objects.filter(user=admin_user, level="critical").count() == 1
    set_apps(web, [])
    services.evaluate_instance(instance_id=web.pk)
    set_apps(web, [("telnetd", "0.17")])
    services.evaluate_instance(instance_id=web.pk)  # a new opening
    assert Notification.objects.filter(user=admin_user, level="critical").count() == 2


def test_many_critical_openings_at_once_give_one_summary_notification(make_instance, admin_user):
    for _ in range(8):
        make_instance(apps=[("telnetd", "0.17")])
    make_policy(name="Block telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    [note] = Notification.objects.filter(user=admin_user, level="critical")
    assert note.title == "8 critical violations opened"


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_that_changes_state_reevaluates_that_instance(make_instance):
    web = make_instance(apps=[("monitoring-agent", "1.0")])
    make_policy()
    assert not Violation.objects.filter(instance=web).exists()
    fleet_services.heartbeat_record(instance=web, state={"os_version": "24.04", "apps": []})
    violation = Violation.objects.get(instance=web)
    assert violation.status == "open" and violation.evidence == "monitoring-agent missing"


def test_the_heartbeat_signal_enqueues_the_evaluation_on_commit(make_instance, django_capture_on_commit_callbacks):
    web = make_instance(apps=[("monitoring-agent", "1.0")])
    make_policy()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        fleet_services.heartbeat_record(instance=web, state={"os_version": "24.04", "apps": []})
    assert callbacks
    assert Violation.objects.get(instance=web).status == "open"


def test_the_update_deadline_clock_survives_a_newer_release_replacing_an_older_one(make_instance):
    now = timezone.now()
    first = now - timedelta(hours=40)
    web = make_instance(
        os_version="24.04.1",
        updates=[{"kind": "os", "name": "os", "version": "24.04.2", "released_at": first.isoformat()}],
    )
    make_policy(name="Patch fast", policy_type="update_rules", rules={"os_deadline_hours": 48})
    assert ReleaseRecord.objects.filter(instance=web, closed_at__isnull=True).count() == 1
    # A newer release arrives and the agent only reports that one.
    web.updates = [{"kind": "os", "name": "os", "version": "24.04.3", "released_at": now.isoformat()}]
    web.save()
    services.evaluate_instance(instance_id=web.pk, now=now)
    assert not Violation.objects.filter(instance=web).exists()
    services.evaluate_instance(instance_id=web.pk, now=now + timedelta(hours=10))
    violation = Violation.objects.get(instance=web)
    assert "50 h > 48 h" in violation.evidence
    # Installing the newest applies both releases and resolves the violation.
    web.os_version, web.updates = "24.04.3", []
    web.save()
    services.evaluate_instance(instance_id=web.pk, now=now + timedelta(hours=11))
    violation.refresh_from_db()
    assert violation.status == "resolved"
    assert set(ReleaseRecord.objects.filter(instance=web).values_list("outcome", flat=True)) == {"applied"}
    timeliness = selectors.update_rule_timeliness(violation.policy, now=now + timedelta(hours=11))
    assert (timeliness["on_time"], timeliness["late"]) == (1, 1)


def test_deleting_a_policy_keeps_its_violations_as_resolved_history(make_instance, admin_user):
    web = make_instance(apps=[])
    policy = make_policy()
    services.policy_delete(actor=admin_user, policy=policy)
    violation = Violation.objects.get(instance=web)
    assert violation.status == "resolved" and violation.policy is None and violation.policy_name == "Need agent"
    assert InstanceCompliance.objects.get(instance=web).score is None


def test_disabling_a_policy_resolves_its_violations_and_rescoring_follows(make_instance, admin_user):
    web = make_instance(apps=[])
    policy = make_policy()
    services.policy_disable(actor=admin_user, policy=policy)
    assert Violation.objects.get(instance=web).status == "resolved"
    assert (
        not PolicyCompliance.objects.filter(policy=policy).exists()
        or PolicyCompliance.objects.get(policy=policy).applicable == 0
    )


def test_open_violation_keys_are_stable_per_policy_and_rule(make_instance):
    web = make_instance(apps=[])
    clean = make_instance(apps=[("monitoring-agent", "1")])
    policy = make_policy()
    assert selectors.open_violation_keys([web.pk, clean.pk]) == {
        web.pk: {f"{policy.pk}:app:monitoring-agent"},
        clean.pk: set(),
    }


def test_snapshot_answers_whether_an_instance_was_compliant_on_a_day(make_instance, group):
    good = make_instance(apps=[("monitoring-agent", "1")], groups=[group])
    bad = make_instance(apps=[])
    make_policy()
    result = services.compliance_snapshot_take()
    assert result["fleet"] == 50.0
    today = timezone.localdate()
    assert selectors.instance_compliance_on(good, today)["compliant"] is True
    assert selectors.instance_compliance_on(bad, today)["compliant"] is False
    # Without a snapshot the violation history answers.
    yesterday_bad = selectors.instance_compliance_on(bad, today - timedelta(days=1))
    assert yesterday_bad["source"] in ("violation history", "not registered yet")
    [web_group] = selectors.compliance_trend(kind="group")
    assert (web_group.label, web_group.score) == ("web", 100.0)


def test_per_policy_counts_kept_by_heartbeat_evaluations_match_a_full_recount(make_instance):
    web = make_instance(apps=[("monitoring-agent", "1")], settings={"ssh.password_auth": False})
    make_instance(apps=[], settings={"ssh.password_auth": False})
    make_policy()
    make_policy(name="SSH keys only", policy_type="baseline", rules={"settings": {"ssh.password_auth": False}})
    web.apps, web.settings = [], {"ssh.password_auth": True}
    web.save()
    services.evaluate_instance(instance_id=web.pk)
    incremental = {pc.policy_id: (pc.compliant, pc.noncompliant) for pc in PolicyCompliance.objects.all()}
    services.evaluate_fleet()
    recount = {pc.policy_id: (pc.compliant, pc.noncompliant) for pc in PolicyCompliance.objects.all()}
    assert incremental == recount
    assert sorted(recount.values()) == [(0, 2), (1, 1)]


def test_exception_expiry_on_its_own_reopens_only_its_scope(make_instance, admin_user):
    web = make_instance(apps=[])
    policy = make_policy()
    services.exception_create(
        actor=admin_user,
        policy=policy,
        scope=Scope(kind="instances", instance_ids=(web.pk,)),
        justification="Agent rollout pending",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert Violation.objects.get(instance=web).status == "exempted"
    expired = services.exceptions_expire(now=timezone.now() + timedelta(minutes=10))
    assert len(expired) == 1
    assert Violation.objects.get(instance=web).status == "open"
    assert services.exceptions_expire(now=timezone.now() + timedelta(minutes=20)) == []  # acted on once


def test_a_large_sweep_writes_through_copy_and_never_doubles_a_row(make_instance, monkeypatch):
    """The COPY path (PostgreSQL, many new violations) stores the same rows as bulk_create."""
    from governance.evaluation import diff, store

    monkeypatch.setattr(store, "COPY_FROM", 1)
    instances = [make_instance(apps=[]) for _ in range(3)]
    make_policy()
    services.evaluate_fleet()
    rows = Violation.objects.filter(status="open").order_by("instance_id")
    assert [(v.instance_id, v.evidence) for v in rows] == [(i.pk, "monitoring-agent missing") for i in instances]
    assert InstanceCompliance.objects.filter(instance__in=instances, score=0).count() == 3

    again = [
        (
            v.instance_id,
            diff.NewViolation(v.policy_id, v.policy_name, v.rule_key, v.rule, v.evidence, v.severity, v.status, None),
        )
        for v in rows
    ]
    with pytest.raises(IntegrityError), transaction.atomic():  # one current row per rule: never doubled
        store.insert_violations(again, timezone.now())
    assert Violation.objects.count() == 3
