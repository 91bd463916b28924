"""The heartbeat's fast path (evaluation.single) reads what the chunk read does, in two statements,
and queued heartbeat evaluations (evaluation.pending) are claimed and evaluated."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fleet.scopes import Scope
from governance import services
from governance.evaluation import single, specs, store
from governance.models import InstanceCompliance, PendingEvaluation, ReleaseRecord, Violation
from tests.governance.conftest import hours_ago, make_policy

pytestmark = pytest.mark.django_db


def id_of(row):
    return row.id


@pytest.fixture
def evaluated(make_instance, group):
    """An instance with groups, tags, an open release record, open and exempted violations."""
    inst = make_instance(
        apps=[("telnetd", "0.1")],
        settings={"ssh.password_auth": True},
        updates=[{"kind": "os", "name": "os", "version": "24.04.3", "released_at": hours_ago(60).isoformat()}],
        groups=[group],
        tags=["env=production", "role=web"],
    )
    make_policy()
    blocked = make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnet*"}]})
    make_policy(name="OS in 48 h", policy_type="update_rules", rules={"os_deadline_hours": 48})
    services.exception_create(
        actor=None,
        policy=blocked,
        scope=Scope(kind="instances", instance_ids=(inst.pk,)),
        justification="Legacy box, replacement ordered",
        expires_at=timezone.now() + timedelta(days=3),
    )
    services.evaluate_instance(instance_id=inst.pk)
    assert ReleaseRecord.objects.filter(instance=inst, closed_at__isnull=True).exists()
    assert set(Violation.objects.filter(instance=inst).values_list("status", flat=True)) == {"open", "exempted"}
    return inst


def test_the_one_instance_read_returns_what_the_chunk_read_does(evaluated):
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        rows, policies_version, waivers_version = single.lock_and_read(evaluated.pk)
        fast = len(queries)
    with transaction.atomic():
        general = list(store.read([evaluated.pk]))

    def by_id(rows):  # the order of the open rows does not matter to diff
        return [
            (state, sorted(releases, key=id_of), sorted(open_, key=id_of), old) for state, releases, open_, old in rows
        ]

    assert by_id(rows) == by_id(general)
    if connection.vendor == "postgresql":
        assert fast == 2  # the lock, then one read of everything
        assert policies_version == specs.policies_version()
        assert waivers_version == specs.exceptions_version()


def test_the_one_instance_read_of_a_deleted_instance_is_empty(evaluated):
    pk = evaluated.pk
    evaluated.delete()
    with transaction.atomic():
        assert single.lock_and_read(pk)[0] == []


def test_a_heartbeat_evaluation_leaves_what_a_sweep_would(evaluated):
    evaluated.apps = []
    evaluated.save(update_fields=["apps"])
    services.evaluate_instance(instance_id=evaluated.pk)
    after_heartbeat = sorted(Violation.objects.exclude(status="resolved").values_list("rule_key", "status"))
    standing = InstanceCompliance.objects.values_list("met", "applicable", "exempt", "states").get()
    services.evaluate_fleet()
    assert sorted(Violation.objects.exclude(status="resolved").values_list("rule_key", "status")) == after_heartbeat
    assert InstanceCompliance.objects.values_list("met", "applicable", "exempt", "states").get() == standing
    assert ("app:monitoring-agent", "open") in after_heartbeat


def test_queued_evaluations_are_claimed_and_evaluated(make_instance, django_capture_on_commit_callbacks):
    make_policy()
    a, b = make_instance(apps=[("monitoring-agent", "1")]), make_instance(apps=[("monitoring-agent", "1")])
    for inst in (a, b):
        inst.apps = []
        inst.save(update_fields=["apps"])
    with django_capture_on_commit_callbacks() as sent:
        services.queue_instance_evaluation(instance_id=a.pk)
        services.queue_instance_evaluation(instance_id=b.pk)
    assert len(sent) == 1  # b found a queued and relied on its task
    assert PendingEvaluation.objects.count() == 2
    assert services.evaluate_pending()["instances"] == 2
    assert not PendingEvaluation.objects.exists()
    assert Violation.objects.filter(status="open", rule_key="app:monitoring-agent").count() == 2
