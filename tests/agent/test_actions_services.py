"""start / stop / restart app through systemctl. systemd is not PID 1 here (nor in CI): the agent
refuses with that reason, and the commands it would run where systemd is the service manager are
checked through a dry run."""

import pytest
from governance_agent import actions
from governance_agent.system import Host


class SystemdHost(Host):
    systemd_running = True


@pytest.mark.parametrize(("kind", "verb"), [("start_app", "start"), ("stop_app", "stop"), ("restart_app", "restart")])
def test_each_app_command_is_the_systemctl_verb_on_the_apps_unit(scratch, kind, verb):
    host = SystemdHost.from_config(scratch.config(report={"units": {"openssh-server": "ssh"}}))
    outcome = actions.execute(host, scratch.state(), kind, {"app": "openssh-server"}, dry_run=True)
    assert outcome.output == f"would run: systemctl {verb} -- ssh.service"
    assert outcome.error == actions.DRY_RUN_REASON


def test_without_systemd_the_command_fails_saying_why(scratch):
    host = scratch.host()
    if host.systemd_running:
        pytest.skip("systemd is the service manager here")
    outcome = actions.execute(host, scratch.state(), "restart_app", {"app": "nginx"})
    assert outcome.status == "failed"
    assert outcome.error.startswith("systemd is not the service manager on this machine (PID 1 is ")
    assert outcome.error.endswith("): cannot manage nginx.service.")


def test_a_unit_that_does_not_come_up_fails_with_its_state(scratch):
    """After `systemctl start`, the agent reads the unit back: here systemctl answers as for a unit that
    failed to start (what systemd does for a crashing service)."""
    from governance_agent.system import Result

    class FailingUnitHost(SystemdHost):
        def run(self, argv, **kwargs):
            if argv[:2] == ["systemctl", "show"]:
                return Result(
                    tuple(argv), 0, "Id=nginx.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\n"
                )
            return Result(tuple(argv), 0)

    host = FailingUnitHost.from_config(scratch.config())
    outcome = actions.execute(host, scratch.state(), "start_app", {"app": "nginx"})
    assert outcome.status == "failed"
    assert outcome.error == "systemctl start nginx.service returned, but the unit is failed."
