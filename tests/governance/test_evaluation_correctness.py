"""Issue #12, the visible bugs: policy counts, deleted policies, release records, snapshot day, rounding."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from fleet.scopes import Scope
from governance import scores, selectors, services
from governance.evaluation import specs
from governance.models import InstanceCompliance, Policy, PolicyCompliance, ReleaseRecord, Violation
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db


def counts(policy):
    pc = PolicyCompliance.objects.get(policy=policy)
    return pc.compliant, pc.noncompliant, pc.exempt, pc.unknown


def blocked_fleet(make_instance):
    for _ in range(3):
        make_instance(apps=[("nginx", "1.0")])
    make_instance(apps=[("telnetd", "0.1")])
    return make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})


def test_disable_then_enable_gives_the_same_counts_every_time(make_instance, admin_user):
    policy = blocked_fleet(make_instance)
    assert counts(policy) == (3, 1, 0, 0)
    for _ in range(3):
        services.policy_disable(actor=admin_user, policy=policy)
        assert counts(policy) == (0, 0, 0, 0)
        services.policy_enable(actor=admin_user, policy=policy)
        assert counts(policy) == (3, 1, 0, 0)


def test_policies_created_back_to_back_each_count_the_fleet_once(make_instance):
    first = blocked_fleet(make_instance)
    others = [
        make_policy(name=f"No telnet {i}", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
        for i in range(3)
    ]
    for policy in [first, *others]:
        assert counts(policy) == (3, 1, 0, 0)


def test_heartbeat_recounts_match_a_sweep_after_scope_changes(make_instance, admin_user, group):
    policy = blocked_fleet(make_instance)
    inside = make_instance(apps=[("telnetd", "0.1")], groups=[group])
    services.policy_update(
        actor=admin_user,
        policy=policy,
        name=policy.name,
        rules=policy.rules,
        scope=Scope(kind="groups", group_ids=(group.pk,)),
    )
    assert counts(policy) == (0, 1, 0, 0)
    inside.apps = []
    inside.save()
    services.evaluate_instance(instance_id=inside.pk)
    assert counts(policy) == (1, 0, 0, 0)
    services.evaluate_fleet()
    assert counts(policy) == (1, 0, 0, 0)


def test_a_policy_deleted_behind_the_cache_is_not_evaluated(make_instance):
    web = make_instance(apps=[])
    policy = make_policy()
    assert [s.id for s in specs.policy_specs()] == [policy.pk]  # cached
    Violation.objects.all().delete()
    Policy.objects.filter(pk=policy.pk).delete()  # not through the service: no lock, no re-evaluation
    result = services.evaluate_instance(instance_id=web.pk)
    assert result["opened"] == 0 and not Violation.objects.exists()
    assert InstanceCompliance.objects.get(instance=web).states == ""


def test_open_release_records_are_unique_and_re_evaluation_adds_none(make_instance):
    released = (timezone.now() - timedelta(hours=5)).isoformat()
    web = make_instance(
        os_version="24.04.1", updates=[{"kind": "os", "name": "os", "version": "24.04.2", "released_at": released}]
    )
    make_policy(name="OS updates", policy_type="update_rules", rules={"os_deadline_hours": 48})
    services.evaluate_instance(instance_id=web.pk)
    services.evaluate_fleet()
    [record] = ReleaseRecord.objects.filter(instance=web)
    duplicate = ReleaseRecord(
        instance=web,
        kind="os",
        name="os",
        version="24.04.2",
        released_at=record.released_at,
        first_seen_at=record.first_seen_at,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()
    ReleaseRecord.objects.bulk_create([duplicate], ignore_conflicts=True)  # how evaluation inserts: skipped
    assert ReleaseRecord.objects.filter(instance=web).count() == 1


def test_evaluation_leaves_the_callers_transaction_settings_alone(make_instance):
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting")
    make_instance(apps=[])
    make_policy()
    with transaction.atomic():
        services.evaluate_fleet()
        services.exceptions_expire()
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


def test_the_snapshot_day_is_the_day_in_settings_time_zone(settings):
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14
    assert settings.CELERY_TIMEZONE in ("UTC", settings.TIME_ZONE)
    late_utc = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert services.snapshot_day(late_utc).isoformat() == "2026-03-02"
    settings.TIME_ZONE = "UTC"
    assert services.snapshot_day(late_utc).isoformat() == "2026-03-01"


def test_celery_beat_runs_in_the_settings_time_zone():
    from django.conf import settings

    from config.celery import app

    assert settings.CELERY_TIMEZONE == settings.TIME_ZONE
    assert str(app.conf.timezone) == settings.TIME_ZONE


def test_scores_are_stored_exact_and_shown_rounded_half_up(make_instance):
    assert scores.display(56.25) == 56.3 and scores.display(0.05) == 0.1 and scores.display(None) is None
    a, b = make_instance(), make_instance()
    for inst, score in ((a, 50.0), (b, 62.5)):
        InstanceCompliance.objects.create(instance=inst, met=1, applicable=2, score=score, evaluated_at=timezone.now())
    assert selectors.fleet_compliance()["average"] == 56.3  # 56.25 exactly; round() would say 56.2


def test_an_instance_score_is_stored_exact(make_instance):
    web = make_instance(apps=[("monitoring-agent", "1")])
    make_policy()
    make_policy(name="Two", rules={"apps": [{"name": "log-collector"}]})
    make_policy(name="Three", rules={"apps": [{"name": "other"}]})
    assert InstanceCompliance.objects.get(instance=web).score == pytest.approx(100 / 3, abs=1e-9)


def test_evidence_of_a_superseded_update_names_the_release_that_set_the_deadline(make_instance):
    now = timezone.now()
    first = now - timedelta(hours=60)
    web = make_instance(
        os_version="24.04.1",
        updates=[{"kind": "os", "name": "os", "version": "24.04.2", "released_at": first.isoformat()}],
    )
    make_policy(name="OS updates", policy_type="update_rules", rules={"os_deadline_hours": 48})
    web.updates = [{"kind": "os", "name": "os", "version": "24.04.3", "released_at": now.isoformat()}]
    web.save()
    services.evaluate_instance(instance_id=web.pk)
    evidence = Violation.objects.get(instance=web, status="open").evidence
    assert evidence.startswith(f"OS 24.04.2 available since {first.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    assert "(superseded by 24.04.3)" in evidence and "60 h > 48 h" in evidence
