"""The agent against a live panel (pytest-django's live server, the real agent API): registration,
heartbeats of the scratch system's real state, commands carried out once, and panel outages."""

import json
import stat
import sys
import threading
from datetime import timedelta

import pytest
from governance_agent import actions
from governance_agent.daemon import REFUSED_WAIT, Agent, AgentError, Backoff
from governance_agent.panel import PanelError, Unreachable
from governance_agent.store import CredentialError

from fleet.choices import CommandType, RunStatus, ScopeKind
from fleet.models import CommandRun, Instance
from fleet.scopes import Scope
from fleet.services import agent_credential_rotate, command_create, registration_token_create
from tests.conftest import _serialize_shared_sqlite, _serve_like_production, wait_for

from .conftest import ROOT
from .forwarder import Forwarder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def panel(live_server):
    _serve_like_production(live_server)
    _serialize_shared_sqlite(live_server)
    _token, plaintext = registration_token_create(actor=None, name="agent tests")
    return live_server.url, plaintext


@pytest.fixture
def make_agent(scratch, panel):
    agents = []

    def _make(url=None, **kw):
        config = scratch.config(panel={"url": url or panel[0], "registration_token": panel[1], "name": "web-01"})
        agent = Agent(config, insecure_dev=True, **kw).start()
        agents.append(agent)
        return agent

    yield _make
    for agent in agents:
        agent.stop()


@pytest.fixture
def web(scratch):
    scratch.package("gov-web", "1.0-1")
    scratch.package("gov-web", "1.1-1")
    scratch.base_files(11)
    scratch.install("gov-web=1.0-1", "base-files")
    return scratch


def test_registration_saves_a_root_only_credential_and_the_server_appears(make_agent, scratch):
    agent = make_agent()
    data = agent.register()
    instance = Instance.objects.get(name="web-01")
    assert data["instance_id"] == instance.pk
    assert instance.address == f"127.0.0.1:{agent.health.port}"
    path = scratch.base / "state/credential.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["credential"] == data["credential"]
    with pytest.raises(AgentError, match="already registered as web-01 .* `register --force` registers again"):
        agent.register()
    path.chmod(0o644)
    with pytest.raises(CredentialError, match=r"readable by others \(mode 0644\): run `chmod 600 "):
        agent.load_registration()


def test_heartbeats_carry_the_real_state_and_release_times_survive_a_restart(make_agent, web):
    agent = make_agent()
    agent.register()
    agent.heartbeat()
    instance = Instance.objects.get(name="web-01")
    assert instance.status == "online" and instance.os_version == "12.11"
    assert {a["name"]: a["version"] for a in instance.apps} == {"gov-web": "1.0-1", "base-files": "12.4+deb12u11"}
    assert instance.settings["os.id"] == "debian"
    web.base_files(12)
    web.publish()
    web.apt("update")
    agent.heartbeat()
    instance.refresh_from_db()
    offered = {(u["kind"], u["name"], u["version"]): u["released_at"] for u in instance.updates}
    assert set(offered) == {("app", "gov-web", "1.1-1"), ("app", "base-files", "12.4+deb12u12"), ("os", "os", "12.12")}
    agent.stop()
    restarted = make_agent()
    restarted.load_registration()
    restarted.heartbeat()
    instance.refresh_from_db()
    assert {(u["kind"], u["name"], u["version"]): u["released_at"] for u in instance.updates} == offered


def deliver(agent, kind, params):
    instance = Instance.objects.get(name=agent.config.name)
    command_create(
        actor=None, kind=kind, params=params, scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=(instance.pk,))
    )
    (command,) = agent.panel.commands()
    return command


def test_a_command_delivered_twice_runs_once(make_agent, web):
    agent = make_agent()
    agent.register()
    command = deliver(agent, CommandType.UPDATE_APP, {"app": "gov-web", "version": "1.1-1"})
    agent.carry_out(command)
    run = CommandRun.objects.get(pk=command["run_id"])
    assert run.status == RunStatus.COMPLETED, run.error
    assert "Setting up gov-web (1.1-1)" in run.output
    agent.carry_out(command)  # the same run again (a retry after a lost reply)
    assert web.dpkg_log().count("upgrade gov-web:all 1.0-1 1.1-1") == 1
    assert agent.state.unreported() == []
    web.apt("install", "-y", "--allow-downgrades", "gov-web=1.0-1")  # rolled back by hand; the agent restarts
    agent.stop()
    restarted = make_agent()  # a new process: what it knows comes from the state file
    restarted.load_registration()
    restarted.carry_out(command)
    assert web.installed()["gov-web"] == "1.0-1"
    assert web.dpkg_log().count("upgrade gov-web:all 1.0-1 1.1-1") == 1
    assert CommandRun.objects.get(pk=command["run_id"]).status == RunStatus.COMPLETED


def test_output_with_a_nul_byte_still_reaches_the_panel(make_agent):
    """The panel refuses NUL in text; a maintainer script may print one. The result must not be lost."""
    agent = make_agent()
    agent.register()
    command = deliver(agent, CommandType.INSTALL_APP, {"app": "gov-web"})
    result = actions.Outcome("completed", "Setting up gov-web (1.0-1) ...\nhello\x00world", "").as_report()
    agent._report_or_keep(command["run_id"], result)
    run = CommandRun.objects.get(pk=command["run_id"])
    assert run.status == RunStatus.COMPLETED and run.output.endswith("hello\ufffdworld")


def test_a_command_not_yet_started_when_the_agent_stops_runs_after_the_restart(make_agent, web):
    agent = make_agent()
    agent.register()
    command = deliver(agent, CommandType.UPDATE_APP, {"app": "gov-web", "version": "1.1-1"})
    agent.stopping.set()  # SIGTERM while the delivered batch waits for the worker
    agent._work.put(("commands", [command]))
    agent.stop()
    assert agent.state.run(command["run_id"]) is None and web.installed()["gov-web"] == "1.0-1"
    run = CommandRun.objects.get(pk=command["run_id"])
    assert run.status == RunStatus.RUNNING and run.acknowledged_at is None  # the panel delivers it again
    CommandRun.objects.filter(pk=run.pk).update(delivered_at=run.delivered_at - timedelta(minutes=5))
    restarted = make_agent()
    restarted.load_registration()
    (again,) = restarted.panel.commands()
    restarted.carry_out(again)
    assert CommandRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED
    assert web.installed()["gov-web"] == "1.1-1"


def test_a_run_found_started_after_a_crash_is_reported_failed_not_run_again(make_agent, web):
    agent = make_agent()
    agent.register()
    command = deliver(agent, CommandType.UPDATE_APP, {"app": "gov-web", "version": "1.1-1"})
    agent.state.run_started(command["run_id"], command["kind"], command["params"])  # then the agent died
    agent.carry_out(command)
    run = CommandRun.objects.get(pk=command["run_id"])
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("The agent stopped while this command was running (started ")
    assert web.installed()["gov-web"] == "1.0-1"


def test_a_result_the_panel_did_not_get_is_sent_when_it_answers_again(make_agent, web, live_server):
    forwarder = Forwarder(int(live_server.url.rsplit(":", 1)[1])).start()
    agent = make_agent(url=forwarder.url)
    agent.register()
    command = deliver(agent, CommandType.UPDATE_APP, {"app": "gov-web", "version": "1.1-1"})
    forwarder.stop()
    agent.carry_out(command)  # runs; its report cannot reach the panel
    assert web.installed()["gov-web"] == "1.1-1"
    assert [run_id for run_id, _ in agent.state.unreported()] == [command["run_id"]]
    assert CommandRun.objects.get(pk=command["run_id"]).status == RunStatus.RUNNING
    with pytest.raises(Unreachable):
        agent.flush_reports()
    forwarder.start()
    agent.flush_reports()
    assert CommandRun.objects.get(pk=command["run_id"]).status == RunStatus.COMPLETED
    assert agent.state.unreported() == []


def test_the_agent_rides_out_an_outage_and_sends_the_state_it_has_when_the_panel_returns(make_agent, web, live_server):
    forwarder = Forwarder(int(live_server.url.rsplit(":", 1)[1])).start()
    agent = make_agent(url=forwarder.url)
    agent.register()
    agent.heartbeat_interval = 0.2
    forwarder.stop()
    loop = threading.Thread(target=agent.run_forever, daemon=True)
    loop.start()
    wait_for(lambda: agent.state.data["panel"].get("error"), timeout=20, message="the agent to notice the outage")
    assert "cannot reach" in agent.state.data["panel"]["error"]
    web.install("gov-web=1.1-1")  # the server changes while the panel is away
    forwarder.start()

    def reported():
        apps = {a["name"]: a["version"] for a in Instance.objects.get(name="web-01").apps}
        return apps.get("gov-web") == "1.1-1"

    wait_for(reported, timeout=30, message="the new state to reach the panel after the outage")
    wait_for(lambda: agent.state.data["panel"]["error"] == "", timeout=10, message="the outage to be over")
    agent.stopping.set()
    agent._wake.set()
    loop.join(timeout=10)


def test_a_revoked_credential_is_said_plainly_and_retried_slowly(make_agent):
    agent = make_agent()
    agent.register()
    agent_credential_rotate(actor=None, instance=Instance.objects.get(name="web-01"))
    with pytest.raises(PanelError) as refused:
        agent.heartbeat()
    assert refused.value.status == 401
    assert agent._on_panel_error(refused.value, Backoff(), False) == REFUSED_WAIT


def test_the_development_agent_registers_again_when_the_panel_forgot_it(make_agent, scratch, panel):
    """`make run AGENT=local` after `make clean`: the saved credential names a server the panel's new
    database never had; without this the agent would wait for `register --force`."""
    sys.path.insert(0, str(ROOT / "agent"))
    import dev_agent

    agent = make_agent()
    agent.register()
    directory = scratch.base / "state"
    assert dev_agent.drop_refused_credential(directory, panel[0]) is False  # known: kept
    assert (directory / "credential.json").exists()
    Instance.objects.filter(name="web-01").delete()
    assert dev_agent.drop_refused_credential(directory, panel[0]) is True
    assert not (directory / "credential.json").exists()
    again = make_agent()
    assert again.load_registration() is None
    again.register()
    assert Instance.objects.filter(name="web-01").exists()


def test_backoff_doubles_to_a_minute_with_jitter():
    backoff = Backoff()
    waits = [backoff.next() for _ in range(9)]
    assert 0.8 <= waits[0] <= 1.2 and 1.6 <= waits[1] <= 2.4
    assert all(48 <= w <= 72 for w in waits[6:])
    backoff.reset()
    assert backoff.next() <= 1.2


def test_package_lists_are_refreshed_on_their_interval_by_the_worker(scratch, panel):
    scratch.package("gov-web", "1.0-1")
    scratch.publish()
    config = scratch.config(panel={"url": panel[0], "name": "web-01"}, report={"apt_update_interval": 3600})
    agent = Agent(config, insecure_dev=True).start()
    try:
        agent._maybe_refresh_lists()
        wait_for(lambda: agent.state.data.get("lists_refreshed_at"), timeout=30, message="apt-get update")
        lists = [p.name for p in (scratch.root / "var/lib/apt/lists").iterdir()]
        assert any(name.endswith("_Packages") for name in lists)
        agent._maybe_refresh_lists()  # within the interval: nothing queued
        assert agent._work.empty() and not agent._busy.is_set()
    finally:
        agent.stop()


def test_while_a_command_runs_the_state_from_before_it_is_sent(make_agent, web):
    agent = make_agent()
    agent.register()
    agent.heartbeat()
    web.install("gov-web=1.1-1")  # as if dpkg were half-way through a command's change
    agent._busy.set()
    agent.heartbeat()
    apps = lambda: {a["name"]: a["version"] for a in Instance.objects.get(name="web-01").apps}  # noqa: E731
    assert apps()["gov-web"] == "1.0-1"
    agent._busy.clear()
    agent.heartbeat()
    assert apps()["gov-web"] == "1.1-1"


def test_an_unchanged_state_goes_as_its_etag_and_in_full_when_the_panel_lost_it(make_agent, web):
    agent = make_agent()
    agent.register()
    sent = []
    request = agent.panel.session.request

    def recording(method, url, **kwargs):
        sent.append((kwargs.get("data"), kwargs.get("headers", {}).get("If-Match")))
        return request(method, url, **kwargs)

    agent.panel.session.request = recording
    agent.heartbeat()
    instance = Instance.objects.get(name="web-01")
    first_seen = instance.last_seen_at
    agent.heartbeat()
    instance.refresh_from_db()
    (full_body, _), (no_body, etag) = sent
    assert full_body and no_body is None and etag == f'"{instance.heartbeat_digest}"'
    assert instance.last_seen_at > first_seen
    # The panel forgets the body (a revalidation, a restore): the agent's If-Match gets a 412, and the
    # full state follows in the same heartbeat.
    Instance.objects.filter(pk=instance.pk).update(heartbeat_digest="")
    sent.clear()
    agent.heartbeat()
    assert [bool(body) for body, _ in sent] == [False, True]
    instance.refresh_from_db()
    assert instance.heartbeat_digest == etag.strip('"')
