from datetime import timedelta

import pytest
from django.utils import timezone

from fleet.choices import InstanceStatus
from fleet.models import Group, Instance, Tag
from fleet.scopes import Scope
from governance import services
from governance.evaluation import specs


@pytest.fixture(autouse=True)
def _eager_celery(request, monkeypatch):
    """Tasks run inline, so a test sees their effect. Inside a test's wrapping transaction nothing ever
    commits, so on-commit callbacks run immediately, except in transactional tests and in tests that
    capture them on purpose (django_capture_on_commit_callbacks)."""
    from django.db import transaction

    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    specs.clear_cache()
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction"))
    if not transactional and "django_capture_on_commit_callbacks" not in request.fixturenames:
        monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: func())
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def make_instance(db):
    counter = {"n": 0}

    def _make(
        name=None,
        *,
        apps=(),
        settings=None,
        updates=(),
        os_version="24.04",
        status=InstanceStatus.ONLINE,
        last_seen_at=None,
        groups=(),
        tags=(),
    ):
        counter["n"] += 1
        inst = Instance.objects.create(
            name=name or f"web-{counter['n']:02d}",
            os_version=os_version,
            status=status,
            last_seen_at=last_seen_at or timezone.now(),
            apps=[
                {"name": n, "version": v, "running": r} for n, v, r in (a if len(a) == 3 else (*a, True) for a in apps)
            ],
            settings=settings or {},
            updates=list(updates),
        )
        inst.groups.set(groups)
        inst.tags.set([Tag.objects.get_or_create(key=t.split("=")[0], value=t.split("=")[1])[0] for t in tags])
        return inst

    return _make


@pytest.fixture
def group(db):
    return Group.objects.create(name="web")


def make_policy(actor=None, *, name="Need agent", policy_type="required_apps", rules=None, scope=None, enabled=True):
    rules = rules or {"apps": [{"name": "monitoring-agent"}]}
    return services.policy_create(
        actor=actor, name=name, policy_type=policy_type, rules=rules, scope=scope or Scope(), enabled=enabled
    )


def hours_ago(h):
    return timezone.now() - timedelta(hours=h)
