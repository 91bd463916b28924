"""End to end: a real agent process (the pip-installed `governance-agent`) registers over TLS with a live
panel — gunicorn serving HTTPS with a certificate this test makes, a real Celery worker and beat,
PostgreSQL, Redis. A policy requires a package the server lacks; the agent's heartbeat shows it
missing; a canary deployment installs it through the agent (real apt-get and dpkg in a scratch root,
the agent's health endpoint answering the canary's probes); the violation resolves.

systemd is not PID 1 here, so the agent's health check is a TCP one (systemd checks: test_health.py).
"""

import signal
import socket
import subprocess
import sys

import pytest

from canary import services as canary_services
from canary.choices import Criterion, Phase, PollPurpose, SelectionKind
from canary.models import HealthPoll
from fleet.choices import CommandType, ScopeKind
from fleet.models import Instance
from fleet.scopes import Scope
from fleet.services import registration_token_create
from governance import services as governance_services
from governance.choices import PolicyType, ViolationStatus
from governance.models import Violation
from tests.conftest import ROOT as PANEL_ROOT
from tests.conftest import wait_for

from .conftest import agent_cli
from .tls import make_certs

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("postgres_required"),
    pytest.mark.django_db(transaction=True),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tls_panel(install_license, child_env, celery_worker_factory, tmp_path):
    """gunicorn over HTTPS (the test's own CA), a Celery worker and beat; yields (url, CA bundle path)."""
    install_license("business")
    certs = make_certs(tmp_path / "tls")
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"]
        + ["--certfile", str(certs.cert), "--keyfile", str(certs.key), "--timeout", "60"],
        cwd=PANEL_ROOT,
        env=child_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    celery_worker_factory()
    celery_worker_factory(beat=True)
    try:
        wait_for(lambda: _accepts(port), timeout=30, message="gunicorn to listen")
        yield f"https://127.0.0.1:{port}", certs.ca
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _accepts(port) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_a_canary_installs_a_required_package_through_a_real_agent_and_the_violation_resolves(
    tls_panel, installed, scratch, operator_user, admin_user, tmp_path
):
    url, ca = tls_panel
    scratch.package("gov-monitor", "1.0-1", files={"/usr/lib/gov-monitor/monitor.conf": "interval = 10\n"})
    scratch.base_files(11)
    scratch.install("base-files")  # the scratch server has an OS and lacks gov-monitor
    _token, token = registration_token_create(actor=None, name="e2e")
    health_port, panel_port = free_port(), int(url.rsplit(":", 1)[1])
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[panel]
url = "{url}"
ca_bundle = "{ca}"
registration_token = "{token}"
name = "e2e-01"
command_poll_interval = 0.5
[agent]
state_dir = "{scratch.base}/state"
credential_file = "{scratch.base}/etc/credential.json"
managed_settings_file = "{scratch.root}/etc/governance-agent/managed-settings.json"
[report]
apt_update_interval = 0
[health]
listen = "127.0.0.1:{health_port}"
[[health.checks]]
type = "tcp"
port = {panel_port}
name = "panel reachable"
[system]
root = "{scratch.root}"
apt_config = "{scratch.apt_config}"
"""
    )
    config.chmod(0o600)
    registered = agent_cli(installed, "register", "-c", str(config))
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.startswith("registered as e2e-01 (instance ")

    policy = governance_services.policy_create(
        actor=admin_user,
        name="monitoring everywhere",
        policy_type=PolicyType.REQUIRED_APPS,
        rules={"apps": [{"name": "gov-monitor", "running": True}]},
        scope=Scope(),
    )
    _script, _site, env = installed
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen([str(_script), "run", "-c", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        instance = wait_for(
            lambda: Instance.objects.filter(name="e2e-01", status="online").first(), timeout=30, message="online"
        )
        assert instance.address == f"127.0.0.1:{health_port}" and instance.os_version == "12.11"
        assert [a["name"] for a in instance.apps] == ["base-files"]
        violation = wait_for(
            lambda: Violation.objects.filter(policy=policy, instance=instance, status=ViolationStatus.OPEN).first(),
            timeout=60,
            message="the violation for the missing gov-monitor",
        )

        deployment = canary_services.canary_create(
            actor=operator_user,
            kind=CommandType.INSTALL_APP,
            params={"app": "gov-monitor", "version": "1.0-1"},
            scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=(instance.pk,)),
            selection=SelectionKind.INSTANCES,
            instances=[instance],
            criteria=[Criterion.ONLINE, Criterion.HEALTH_CHECK],
            check_interval=1,
            max_duration=90,
        )

        def finished():
            deployment.refresh_from_db()
            return deployment.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK)

        wait_for(finished, timeout=150, message="the canary deployment to finish")
        assert deployment.phase == Phase.SUCCEEDED, deployment.failure_reason
        assert scratch.installed() == {"base-files": "12.4+deb12u11", "gov-monitor": "1.0-1"}
        assert (scratch.root / "usr/lib/gov-monitor/monitor.conf").read_text() == "interval = 10\n"
        run = deployment.canary_command.runs.get()
        assert "Setting up gov-monitor (1.0-1)" in run.output and run.output.endswith("gov-monitor 1.0-1 is installed.")
        # The canary's probes reached the agent's own health endpoint, which answered 200.
        polls = list(
            HealthPoll.objects.filter(deployment=deployment, instance=instance, purpose=PollPurpose.EVALUATION)
        )
        assert polls and all(p.healthy and p.status_code == 200 for p in polls)
        assert {p.url for p in polls} == {f"http://127.0.0.1:{health_port}/health"}

        wait_for(
            lambda: Violation.objects.get(pk=violation.pk).status == ViolationStatus.RESOLVED,
            timeout=60,
            message="the violation to resolve once the agent reported gov-monitor",
        )
        instance.refresh_from_db()
        assert {a["name"]: a["version"] for a in instance.apps}["gov-monitor"] == "1.0-1"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(timeout=30)
        finally:
            log.close()
    assert code == 0, (tmp_path / "agent.log").read_text()[-3000:]
    assert "stopping (signal 15)" in (tmp_path / "agent.log").read_text()
