"""End to end: simulated instances against a live server register, heartbeat, run commands, break on cue."""

import time

import pytest
import requests

from fleet import services
from fleet.choices import CommandType, InstanceStatus, RunStatus, ScopeKind
from fleet.models import CommandRun, Instance
from fleet.scopes import Scope
from fleet.simulator import health_from_state
from tests.conftest import wait_for


def health(inst, path="/health", timeout=3.0):
    return requests.get(f"http://{inst.address}{path}", timeout=timeout)


def send(instances, kind, params):
    scope = Scope(kind=ScopeKind.INSTANCES, instance_ids=tuple(i.pk for i in instances))
    return services.command_create(actor=None, kind=kind, params=params, scope=scope)


def wait_online(count):
    wait_for(
        lambda: Instance.objects.filter(status=InstanceStatus.ONLINE).count() == count,
        timeout=20,
        message=f"{count} instances online",
    )


def run_finished(run):
    run.refresh_from_db()
    return run.status in (RunStatus.COMPLETED, RunStatus.FAILED)


@pytest.mark.integration
def test_a_simulated_fleet_comes_online_and_completes_a_command(simulated_fleet):
    fleet = simulated_fleet(count=3, heartbeat_interval=0.5, command_poll_interval=0.2)
    wait_online(3)
    instance = Instance.objects.get(name="sim-01")
    assert instance.address == fleet.instances[0].address
    assert instance.os_version.startswith("24.04")
    assert instance.apps and "ssh.password_auth" in instance.settings

    run = send(
        [instance], CommandType.SET_CONFIG, {"values": {"ssh.password_auth": False, "motd": "hello"}, "unset": []}
    ).runs.get()
    wait_for(lambda: run_finished(run), timeout=20, message="the run to finish")
    assert run.status == RunStatus.COMPLETED, run.error
    wait_for(
        lambda: Instance.objects.get(pk=instance.pk).settings.get("motd") == "hello",
        timeout=10,
        message="the new setting in a heartbeat",
    )


@pytest.mark.integration
def test_a_command_that_cannot_apply_fails_with_the_agents_reason(simulated_fleet):
    fleet = simulated_fleet(count=1, heartbeat_interval=0.5, command_poll_interval=0.2)
    instance = Instance.objects.get(name=fleet.instances[0].name)
    run = send([instance], CommandType.UPDATE_APP, {"app": "no-such-app", "version": "1.0"}).runs.get()
    wait_for(lambda: run_finished(run), timeout=20, message="the run to finish")
    assert run.status == RunStatus.FAILED
    assert "no-such-app is not installed" in run.error


@pytest.mark.integration
def test_the_health_endpoint_follows_injected_faults(simulated_fleet):
    fleet = simulated_fleet(count=1, hang_seconds=2.0)
    inst = fleet.instances[0]
    assert health(inst).json() == {"status": "ok"}
    assert health(inst, "/api/status").json()["name"] == inst.name
    fleet.inject(inst.name, "fail")
    assert health(inst).status_code == 500
    fleet.inject(inst.name, "hang")
    with pytest.raises(requests.Timeout):
        health(inst, timeout=0.5)
    fleet.inject(inst.name, "down")
    with pytest.raises(requests.ConnectionError):
        health(inst)
    fleet.inject(inst.name, "ok")
    assert health(inst).status_code == 200


@pytest.mark.integration
def test_deploying_a_broken_version_breaks_health_and_reverting_heals_it(simulated_fleet):
    fleet = simulated_fleet(count=1, heartbeat_interval=0.5, command_poll_interval=0.2)
    inst = fleet.instances[0]
    wait_online(1)
    instance = Instance.objects.get(name=inst.name)
    app = instance.apps[0]["name"]
    run = send([instance], CommandType.UPDATE_APP, {"app": app, "version": "9.9+down"}).runs.get()
    wait_for(lambda: run_finished(run), timeout=20, message="the update")
    assert run.status == RunStatus.COMPLETED
    with pytest.raises(requests.ConnectionError):
        health(inst)
    revert = services.command_run_revert(actor=None, run=run).runs.get()
    wait_for(lambda: run_finished(revert), timeout=20, message="the revert")
    assert revert.status == RunStatus.COMPLETED
    assert health(inst).status_code == 200


@pytest.mark.integration
def test_an_instance_set_offline_stops_heartbeating_and_polling(simulated_fleet):
    fleet = simulated_fleet(count=2, heartbeat_interval=0.3, command_poll_interval=0.2)
    wait_online(2)
    fleet.set_offline("sim-01", True)
    time.sleep(0.6)  # let a heartbeat already in flight land
    seen = Instance.objects.get(name="sim-01").last_seen_at
    run = send([Instance.objects.get(name="sim-01")], CommandType.RESTART_APP, {"app": "nginx"}).runs.get()
    time.sleep(1.5)
    assert Instance.objects.get(name="sim-01").last_seen_at == seen
    assert CommandRun.objects.get(pk=run.pk).status == RunStatus.PENDING
    assert Instance.objects.get(name="sim-02").last_seen_at > seen
    fleet.set_offline("sim-01", False)
    wait_for(lambda: Instance.objects.get(name="sim-01").last_seen_at > seen, timeout=10, message="heartbeats again")


def test_state_faults_come_from_app_versions_and_the_sim_health_setting():
    assert health_from_state({"apps": [{"name": "a", "version": "1.0"}]}) == "ok"
    assert health_from_state({"apps": [{"name": "a", "version": "1.1+fail"}]}) == "fail"
    assert (
        health_from_state({"apps": [{"name": "a", "version": "1.1+hang"}], "settings": {"sim.health": "down"}})
        == "down"
    )
    assert health_from_state({"settings": {"sim.health": "hang"}}) == "hang"


@pytest.mark.integration
def test_a_simulated_instance_with_a_refused_token_gives_up_with_the_reason(live_server, transactional_db):
    from fleet.simulator import SimulatedFleet

    fleet = SimulatedFleet(live_server.url, "reg_nope_nope", 1, name_prefix="refused").start()
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="was refused.*registration token is not valid"):
            fleet.wait_registered(timeout=20)
        assert time.monotonic() - started < 10
    finally:
        fleet.stop()
    assert not Instance.objects.filter(name__startswith="refused").exists()


@pytest.mark.integration
def test_stopping_a_fleet_returns_promptly_even_while_a_health_check_hangs(simulated_fleet):
    fleet = simulated_fleet(count=2)
    fleet.inject("sim-01", "hang")
    import threading

    threading.Thread(
        target=lambda: requests.get(f"http://{fleet.instances[0].address}/health", timeout=10), daemon=True
    ).start()
    time.sleep(0.3)
    started = time.monotonic()
    fleet.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(requests.ConnectionError):
        health(fleet.instances[1])


@pytest.mark.integration
def test_a_run_delivered_twice_is_applied_once_and_its_result_sent_again(simulated_fleet, settings):
    """At-least-once delivery meets a simulated agent that knows the run ids it carried out."""
    fleet = simulated_fleet(count=1, heartbeat_interval=0.5, command_poll_interval=0.2)
    wait_online(1)
    sim, instance = fleet.instances[0], Instance.objects.get()
    run = send([instance], CommandType.RESTART_APP, {"app": sim.state["apps"][0]["name"]}).runs.get()
    wait_for(lambda: run_finished(run), timeout=20, message="the run to finish")
    done = sim.commands_done
    # As if the panel never heard of the run: it is delivered again on the next poll.
    CommandRun.objects.filter(pk=run.pk).update(status=RunStatus.PENDING, acknowledged_at=None, finished_at=None)
    wait_for(lambda: run_finished(run), timeout=20, message="the result sent again")
    assert run.status == RunStatus.COMPLETED and run.deliveries == 2
    assert sim.commands_done == done  # not carried out a second time
