"""With real parts: PostgreSQL, Redis and a Celery worker. A heartbeat that changes state is evaluated
by the worker; the beat's time-based task and the snapshot task run as registered names."""

import pytest
from django.utils import timezone

from fleet import services as fleet_services
from governance.models import ComplianceSnapshot, Violation
from tests.conftest import wait_for
from tests.governance.conftest import make_policy

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_evaluates_an_instance_after_its_heartbeat_changed_state(
    postgres_required, celery_worker_factory, make_instance
):
    from config.celery import app

    app.conf.task_always_eager = False  # this test goes through Redis to a real worker
    worker = celery_worker_factory()
    web = make_instance(apps=[("monitoring-agent", "1.0")])
    make_policy()  # enqueued on commit; the worker evaluates the scope
    fleet_services.heartbeat_record(instance=web, state={"os_version": "24.04", "apps": []})
    violation = wait_for(
        lambda: Violation.objects.filter(instance=web, status="open").first(),
        timeout=60,
        message="the worker to open a violation",
    )
    assert violation.evidence == "monitoring-agent missing", worker.output()


def test_the_beat_task_names_run_their_services(postgres_required, make_instance):
    from governance import tasks

    make_instance(apps=[])
    make_policy()
    assert tasks.evaluate_time_based.name == "governance.tasks.evaluate_time_based"
    assert tasks.take_compliance_snapshot.name == "governance.tasks.take_compliance_snapshot"
    result = tasks.evaluate_time_based.apply().get()
    assert result["instances"] == 1
    tasks.take_compliance_snapshot.apply().get()
    assert ComplianceSnapshot.objects.filter(date=timezone.localdate(), kind="fleet").get().score == 0.0
