"""The fleet's periodic tasks run in a real Celery worker on Redis against PostgreSQL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from fleet import services, tasks
from fleet.choices import CommandType, InstanceStatus, RunStatus, ScopeKind
from fleet.models import CommandRun, Instance
from fleet.scopes import Scope
from tests.conftest import wait_for

from .helpers import make_instance


@pytest.mark.integration
def test_a_real_worker_marks_silent_instances_offline_and_fails_overdue_runs(transactional_db, celery_worker_factory):
    silent = make_instance("silent")
    alive = make_instance("alive")
    long_ago = timezone.now() - timedelta(hours=1)
    Instance.objects.filter(pk=silent.pk).update(last_seen_at=long_ago)
    Instance.objects.filter(pk=alive.pk).update(last_seen_at=timezone.now())
    scope = Scope(kind=ScopeKind.INSTANCES, instance_ids=(silent.pk,))
    run = services.command_create(
        actor=None, kind=CommandType.RESTART_APP, params={"app": "nginx"}, scope=scope
    ).runs.get()
    CommandRun.objects.filter(pk=run.pk).update(pickup_deadline=long_ago)

    worker = celery_worker_factory()
    tasks.mark_offline_instances.delay()
    tasks.expire_command_runs.delay()

    wait_for(
        lambda: Instance.objects.get(pk=silent.pk).status == InstanceStatus.OFFLINE,
        timeout=60,
        message=f"the worker to mark the instance offline\n{worker.output()[-3000:]}",
    )
    wait_for(
        lambda: CommandRun.objects.get(pk=run.pk).status == RunStatus.FAILED, timeout=60, message="the run to fail"
    )
    assert "Not picked up" in CommandRun.objects.get(pk=run.pk).error
    assert Instance.objects.get(pk=alive.pk).status == InstanceStatus.ONLINE
