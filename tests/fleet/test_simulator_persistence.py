"""A simulated fleet restarted with the same credentials file resumes as the commands left it."""

import json

import pytest
from django.utils import timezone

from fleet import services
from fleet.choices import CommandType, RunStatus, ScopeKind
from fleet.models import Instance
from fleet.scopes import Scope
from fleet.simulator import SimulatedFleet
from tests.conftest import _serialize_shared_sqlite, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_restarted_simulator_keeps_the_changes_commands_applied(live_server, tmp_path):
    _serialize_shared_sqlite(live_server)
    _token, plaintext = services.registration_token_create(actor=None, name="sim")
    credentials = tmp_path / "sim-credentials.json"
    fast = {"heartbeat_interval": 0.3, "command_poll_interval": 0.2, "credentials_file": credentials}

    with SimulatedFleet(live_server.url, plaintext, 1, **fast) as fleet:
        fleet.wait_registered(timeout=60)
        instance = Instance.objects.get(name="sim-01")
        scope = Scope(kind=ScopeKind.INSTANCES, instance_ids=(instance.pk,))
        command = services.command_create(
            actor=None, kind=CommandType.SET_CONFIG, params={"values": {"motd": "kept"}, "unset": []}, scope=scope
        )
        run = command.runs.get()
        wait_for(lambda: (run.refresh_from_db() or run.status) == RunStatus.COMPLETED, message="the run", timeout=60)
    assert json.loads(credentials.read_text())["instances"]["sim-01"]["state"]["settings"]["motd"] == "kept"

    restarted_at = timezone.now()
    with SimulatedFleet(live_server.url, plaintext, 1, **fast) as restarted:
        restarted.wait_registered(timeout=60)
        assert restarted.get("sim-01").state["settings"]["motd"] == "kept"
        # A heartbeat after the restart: had the state gone back to the seed's, it would drop the setting.
        wait_for(
            lambda: Instance.objects.get(pk=instance.pk).last_seen_at > restarted_at,
            timeout=60,  # generous: the shared machine may be busy; the wait ends as soon as it is there
            message="a heartbeat after the restart",
        )
        assert Instance.objects.get(pk=instance.pk).settings.get("motd") == "kept"
    assert Instance.objects.filter(name="sim-01").count() == 1  # the same instance, not a new registration
