"""Two imports at once on PostgreSQL: serialised by the policy-files lock, so neither fails half-way."""

import threading
import time

import pytest
from django.db import connection

from governance.models import Policy, PolicyVersion
from governance.policyfiles import plan

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEXT = "name: Need agent\ntype: required_apps\nrules:\n  apps: [{name: monitoring-agent}]\n"


def test_two_imports_of_the_same_new_policy_at_once_create_it_once(postgres_required, admin_user, monkeypatch):
    apply = plan.apply_plan

    def slow_apply(*args, **kwargs):  # widen the window between reading the policies and writing them
        time.sleep(0.3)
        return apply(*args, **kwargs)

    monkeypatch.setattr(plan, "apply_plan", slow_apply)
    results, errors, start = [], [], threading.Barrier(2)

    def importer():
        try:
            start.wait()
            results.append(plan.policy_files_import({"a.yaml": TEXT}, actor=admin_user, apply=True).summary())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=importer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert not errors, errors
    assert sorted((r["created"], r["unchanged"]) for r in results) == [([], 1), (["Need agent"], 0)]
    assert Policy.objects.count() == 1 and PolicyVersion.objects.count() == 1
