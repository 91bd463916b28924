"""Two admins removing each other at the same moment on PostgreSQL: user_update locks the admins' rows
while it checks, so one of them wins and the panel keeps an active admin."""

import threading
import time

import pytest
from django.db import connection

from common import services
from common.choices import Role
from common.exceptions import ApplicationError
from tests.conftest import _user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_two_admins_deactivating_each_other_at_once_leave_one_admin(postgres_required, monkeypatch):
    alice, bob = _user("alice", Role.ADMIN), _user("bob", Role.ADMIN)
    audit = services.audit_log

    def slow_audit(*args, **kwargs):  # widen the window between the check and the commit
        time.sleep(0.3)
        return audit(*args, **kwargs)

    monkeypatch.setattr(services, "audit_log", slow_audit)
    outcomes, start = [], threading.Barrier(2)

    def remove(actor, user):
        try:
            start.wait()
            services.user_update(actor=actor, user=user, role=Role.ADMIN, is_active=False)
            outcomes.append("done")
        except ApplicationError as exc:
            outcomes.append(exc.message)
        finally:
            connection.close()

    threads = [threading.Thread(target=remove, args=pair) for pair in ((alice, bob), (bob, alice))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert outcomes.count("done") == 1 and any("last active admin" in o for o in outcomes), outcomes
    assert list(services.fleet_admins().values_list("username", flat=True)) in (["alice"], ["bob"])
