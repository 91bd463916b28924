"""Running state from systemd units: parsers on written systemctl output (systemd is not PID 1 on the
machine the Debian samples were captured on), and what happens where systemd cannot answer."""

import pytest
from governance_agent.sources import Collector, systemd
from governance_agent.system import Host, Result

from .conftest import fixture_text


@pytest.mark.parametrize("release", ["debian12", "ubuntu2404"])
def test_unit_files_list_the_services_but_not_templates(release):
    units = systemd.parse_unit_files(fixture_text(f"{release}/systemctl-list-unit-files.txt"))
    assert "ssh.service" in units and "cron.service" in units
    assert not any(u.endswith("@.service") for u in units)


def test_ubuntu_units_are_running_only_when_active_and_a_failed_nginx_is_not():
    asked = ["cron.service", "nginx.service", "ssh.service", "snapd.service", "unattended-upgrades.service"]
    props = systemd.by_unit(asked, systemd.parse_show(fixture_text("ubuntu2404/systemctl-show.txt")))
    running = {unit: systemd.is_running(p) for unit, p in props.items()}
    assert running == {
        "cron.service": True,
        "nginx.service": False,
        "ssh.service": False,
        "snapd.service": True,
        "unattended-upgrades.service": True,
    }


def test_a_reloading_unit_counts_as_running_and_an_alias_answers_for_its_unit():
    blocks = systemd.parse_show(fixture_text("debian12/systemctl-show.txt"))
    asked = ["cron.service", "redis-server.service", "sshd.service", "systemd-timesyncd.service"]
    props = systemd.by_unit(asked, blocks)
    assert props["sshd.service"]["Id"] == "ssh.service"  # the alias asked for, answered by its unit
    assert systemd.is_running(props["systemd-timesyncd.service"]) is True
    assert systemd.is_running(props["redis-server.service"]) is False


def test_the_unit_is_the_app_name_unless_configured():
    assert systemd.unit_for("nginx", {}) == "nginx.service"
    assert systemd.unit_for("openssh-server", {"openssh-server": "ssh"}) == "ssh.service"
    assert systemd.unit_for("docker", {"docker": "docker.socket"}) == "docker.socket"


def test_without_systemd_as_pid_1_no_running_state_is_claimed(scratch):
    host = scratch.host()
    if host.systemd_running:
        pytest.skip("systemd is the service manager here")
    # What systemctl answers here (captured): it cannot operate, so the source does not ask it.
    assert "has not been booted with systemd" in fixture_text("debian12/systemctl-no-systemd.txt")
    assert systemd.running_states(host, ["cron", "nginx"]) == {}


def test_where_systemd_runs_the_apps_running_state_comes_from_systemctl_show(scratch):
    """systemd cannot run in CI: the systemctl commands the agent would run, answered with systemd 252's
    output, and the apps' `running` the panel would get. dpkg-query runs for real in the scratch root."""
    for name in ("cron", "redis-server", "openssh-server", "systemd-timesyncd", "gov-lib"):
        scratch.package(name, "1.0")
    scratch.install("cron", "redis-server", "openssh-server", "systemd-timesyncd", "gov-lib")
    asked = []

    class SystemdHost(Host):
        systemd_running = True

        def run(self, argv, **kwargs):
            if argv[0] != "systemctl":
                return super().run(argv, **kwargs)
            asked.append(list(argv))
            answer = "list-unit-files.txt" if argv[1] == "list-unit-files" else "show.txt"
            return Result(tuple(argv), 0, fixture_text(f"debian12/systemctl-{answer}"))

    host = SystemdHost.from_config(scratch.config(report={"units": {"openssh-server": "sshd"}, "updates": False}))
    apps = Collector(host, scratch.state()).collect().payload["apps"]
    assert asked == [
        ["systemctl", "list-unit-files", "--type=service", "--no-legend", "--no-pager"],
        ["systemctl", "show", "-p", "Id,LoadState,ActiveState,SubState", "--"]
        + ["cron.service", "redis-server.service", "sshd.service", "systemd-timesyncd.service"],
    ]
    assert {a["name"]: a["running"] for a in apps} == {
        "cron": True,
        "gov-lib": True,  # no unit: nothing to stop
        "openssh-server": True,  # through the sshd.service alias of ssh.service
        "redis-server": False,  # inactive
        "systemd-timesyncd": True,  # reloading
    }
