"""set_config with the real tools: sshd -t / sshd -T over a scratch sshd configuration, sysctl on a
private network namespace's kernel parameters (never the machine's), apt-config, and the managed file."""

import json
import subprocess

import pytest
from governance_agent import actions
from governance_agent.sources import Collector
from governance_agent.system import Host

from .conftest import require_tools, run_unshared


def run(scratch, params, *, host=None, dry_run=False):
    return actions.execute(host or scratch.host(), scratch.state(), "set_config", params, dry_run=dry_run)


def managed(scratch) -> dict:
    path = scratch.root / "etc/governance-agent/managed-settings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_keys_without_a_handler_are_kept_in_the_managed_file_and_reported(scratch):
    assert run(scratch, {"values": {"app.mode": "blue", "backup.enabled": True}}).status == "completed"
    assert run(scratch, {"values": {"app.mode": "green"}, "unset": ["backup.enabled"]}).status == "completed"
    assert managed(scratch) == {"app.mode": "green"}
    report = Collector(scratch.host(), scratch.state()).collect()
    assert report.payload["settings"]["app.mode"] == "green" and "backup.enabled" not in report.payload["settings"]


def test_every_bad_key_is_named_at_once_and_nothing_is_written(scratch):
    outcome = run(
        scratch,
        {"values": {"os.name": "x", "sysctl.Bad Key": 1, "ssh.password_auth": "yes\nPermitRootLogin yes", "app.x": 1}},
    )
    assert outcome.status == "failed"
    assert outcome.error.startswith("Nothing was changed: ")
    assert "os.name: os.* settings are read from /etc/os-release and cannot be set" in outcome.error
    assert "sysctl.Bad Key: not a kernel parameter name" in outcome.error
    assert "ssh.password_auth: the value must be one line of text" in outcome.error
    assert managed(scratch) == {}


# --- sshd -------------------------------------------------------------------------------------


@pytest.fixture
def sshd_root(scratch):
    """A scratch sshd configuration that reads the agent's drop-in directory, as Debian's does."""
    require_tools("sshd", "ssh-keygen")
    etc = scratch.root / "etc/ssh"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / "ssh_host_ed25519_key")], check=True)
    (etc / "sshd_config").write_text(
        f"Include {etc}/sshd_config.d/*.conf\nHostKey {etc}/ssh_host_ed25519_key\nPasswordAuthentication yes\n"
    )
    return scratch


def dropin(scratch):
    path = scratch.root / "etc/ssh/sshd_config.d/00-governance.conf"
    return path.read_text() if path.exists() else None


def test_ssh_settings_go_to_the_drop_in_checked_by_sshd(sshd_root):
    outcome = run(sshd_root, {"values": {"ssh.password_auth": False, "ssh.max_auth_tries": 3}})
    assert outcome.status == "completed", outcome.error
    assert dropin(sshd_root).splitlines()[1:] == ["MaxAuthTries 3", "PasswordAuthentication no"]
    assert f"$ sshd -t -f {sshd_root.root}/etc/ssh/sshd_config\n[exit status 0]" in outcome.output
    settings = Collector(sshd_root.host(), sshd_root.state()).collect().payload["settings"]
    assert settings["ssh.password_auth"] is False and settings["ssh.max_auth_tries"] == 3
    if not sshd_root.host().systemd_running:
        # systemd is not PID 1 here: there is no sshd service to reload, and the agent says so.
        assert "sshd was not reloaded; the new settings apply when sshd next starts." in outcome.output
        planned = run(sshd_root, {"values": {"ssh.password_auth": True}}, dry_run=True)
        assert planned.output.endswith(
            f"would not reload sshd: systemd is not the service manager here (PID 1 is {sshd_root.host().pid1()})"
        )
        assert "apply when sshd next starts" not in planned.output  # nothing was written


def test_ssh_reload_is_systemctl_try_reload_or_restart_of_the_ssh_service(sshd_root):
    """systemd cannot run in CI: check the command the agent would run where it is the service manager."""

    class SystemdHost(Host):
        systemd_running = True

    host = SystemdHost.from_config(sshd_root.config())
    outcome = run(sshd_root, {"values": {"ssh.permit_root_login": "no"}}, host=host, dry_run=True)
    assert "would run: systemctl try-reload-or-restart -- ssh.service" in outcome.output
    assert dropin(sshd_root) is None  # dry run


def test_a_value_sshd_refuses_is_not_kept(sshd_root):
    assert run(sshd_root, {"values": {"ssh.max_auth_tries": 4}}).status == "completed"
    before = dropin(sshd_root)
    outcome = run(sshd_root, {"values": {"ssh.password_auth": "maybe"}})
    assert outcome.status == "failed"
    assert outcome.error.startswith("sshd -t refused the new configuration (exit status 255: ")
    assert 'unsupported option "maybe"' in outcome.error and "the previous file is restored" in outcome.error
    assert dropin(sshd_root) == before


def test_a_setting_an_earlier_file_overrides_is_reported_and_restored(sshd_root):
    """sshd keeps the first value it reads: a line before the Include wins over the drop-in."""
    etc = sshd_root.root / "etc/ssh"
    config = (etc / "sshd_config").read_text()
    (etc / "sshd_config").write_text("PermitRootLogin yes\n" + config)
    outcome = run(sshd_root, {"values": {"ssh.permit_root_login": "no"}})
    assert outcome.status == "failed"
    assert outcome.error.startswith("sshd would still use PermitRootLogin yes: a file read before")
    assert dropin(sshd_root) is None


def test_match_and_include_are_refused_as_they_are_not_settings(sshd_root):
    """`Match User nobody` in the drop-in would make the keywords sorted after it apply to nobody only."""
    outcome = run(sshd_root, {"values": {"ssh.match": "User nobody", "ssh.password_auth": True}})
    assert outcome.status == "failed"
    assert (
        outcome.error == "Nothing was changed: ssh.match: Match is sshd_config structure, not a setting the agent sets"
    )
    include = run(sshd_root, {"values": {"ssh.include": "/etc/ssh/other.conf"}})
    assert include.error.endswith("ssh.include: Include is sshd_config structure, not a setting the agent sets")
    assert dropin(sshd_root) is None


def test_a_failing_handler_undoes_the_rest_of_the_same_command(sshd_root):
    outcome = run(sshd_root, {"values": {"app.colour": "red", "ssh.password_auth": "maybe"}})
    assert outcome.status == "failed" and "(the managed changes of this command were undone)" in outcome.error
    assert managed(sshd_root) == {}


PRIVSEP_SCRIPT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from governance_agent import actions
from governance_agent.config import from_dict
from governance_agent.sources import sshd
from governance_agent.store import State
from governance_agent.system import Host
config = from_dict(json.loads(sys.argv[2]), insecure_dev=True)
host = Host.from_config(config)
result = {"missing_before": not os.path.exists("/run/sshd")}
if sys.argv[3] == "report":
    result["settings"] = sshd.collect(host)
else:
    outcome = actions.execute(host, State(config.state_file), "set_config", {"values": {"ssh.password_auth": False}})
    result.update(status=outcome.status, error=outcome.error)
result["mode"] = oct(os.stat("/run/sshd").st_mode & 0o7777) if os.path.isdir("/run/sshd") else None
print(json.dumps(result))
"""


@pytest.mark.parametrize("step", ["report", "set_config"])
def test_sshd_is_asked_where_its_privilege_separation_directory_is_gone(sshd_root, step):
    """systemd removes /run/sshd when ssh.service stops (and /run is empty after a boot, before a
    socket-activated sshd first starts); `sshd -T` and `sshd -t` then refuse to run. The agent makes
    the directory as Debian's init script does. In a private mount namespace with an empty /run:
    the machine's own /run/sshd is never touched."""
    out = run_unshared(
        ["--mount", "--propagation", "private"],
        PRIVSEP_SCRIPT,
        json.dumps(sshd_root.config_data()),
        step,
        prelude="mount -t tmpfs tmpfs /run",
    )
    result = json.loads(out)
    assert result["missing_before"] is True
    if step == "report":
        assert result["settings"]["ssh.password_auth"] is True
    else:
        assert result["status"] == "completed", result["error"]
    assert result["mode"] == "0o755"


# --- sysctl, in a private network namespace ------------------------------------------------------

SYSCTL_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from governance_agent import actions
from governance_agent.config import from_dict
from governance_agent.store import State
from governance_agent.system import Host
config = from_dict(json.loads(sys.argv[2]), insecure_dev=True)
host, state = Host.from_config(config), State(config.state_file)
results = []
for params in json.loads(sys.argv[3]):
    outcome = actions.execute(host, state, "set_config", params)
    state.save()
    value = host.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
    results.append({"status": outcome.status, "error": outcome.error, "output": outcome.output, "ip_forward": value})
print(json.dumps(results))
"""


def sysctl_in_netns(scratch, steps: list[dict]) -> list[dict]:
    """Run set_config steps in a new network namespace: net.* parameters there belong to it alone."""
    require_tools("sysctl")
    config = scratch.config_data()
    return json.loads(run_unshared(["--net"], SYSCTL_SCRIPT, json.dumps(config), json.dumps(steps)))


def test_sysctl_values_are_written_applied_and_restored_on_unset(scratch):
    host_value = subprocess.run(["sysctl", "-n", "net.ipv4.ip_forward"], capture_output=True, text=True).stdout
    results = sysctl_in_netns(
        scratch,
        [{"values": {"sysctl.net.ipv4.ip_forward": 1}}, {"unset": ["sysctl.net.ipv4.ip_forward"]}],
    )
    assert results[0]["status"] == "completed", results[0]["error"]
    assert results[0]["ip_forward"] == "1"
    assert f"$ sysctl -p {scratch.root}/etc/sysctl.d/90-governance.conf" in results[0]["output"]
    assert results[1]["status"] == "completed" and results[1]["ip_forward"] == "0"  # the value from before
    assert not (scratch.root / "etc/sysctl.d/90-governance.conf").exists()
    # The machine's own kernel parameter never moved.
    assert subprocess.run(["sysctl", "-n", "net.ipv4.ip_forward"], capture_output=True, text=True).stdout == host_value


def test_a_value_the_kernel_refuses_restores_file_and_values(scratch):
    results = sysctl_in_netns(
        scratch,
        [
            {"values": {"sysctl.net.ipv4.ip_forward": 1}},
            {"values": {"sysctl.net.ipv4.ip_forward": 0, "sysctl.net.ipv4.tcp_syncookies": "lots"}},
            {"values": {"sysctl.net.ipv4.no_such_parameter": 1}},
        ],
    )
    assert results[1]["status"] == "failed"
    assert results[1]["error"].startswith("sysctl refused the new values (")
    assert results[1]["ip_forward"] == "1"
    text = (scratch.root / "etc/sysctl.d/90-governance.conf").read_text()
    assert "net.ipv4.ip_forward = 1" in text and "tcp_syncookies" not in text
    assert results[2]["status"] == "failed" and results[2]["error"].startswith(
        "No such kernel parameter: net.ipv4.no_such_parameter"
    )


# --- unattended upgrades ----------------------------------------------------------------------


def test_unattended_upgrades_need_the_package_then_follow_the_setting(scratch):
    refused = run(scratch, {"values": {"unattended_upgrades.enabled": True}})
    assert refused.status == "failed" and refused.error.startswith("unattended-upgrades is not installed")
    scratch.package("unattended-upgrades", "2.9.1")
    scratch.install("unattended-upgrades")
    assert run(scratch, {"values": {"unattended_upgrades.enabled": True}}).status == "completed"
    conf = scratch.root / "etc/apt/apt.conf.d/90governance"
    assert 'APT::Periodic::Unattended-Upgrade "1";' in conf.read_text()
    assert Collector(scratch.host(), scratch.state()).collect().payload["settings"]["unattended_upgrades.enabled"]
    assert run(scratch, {"unset": ["unattended_upgrades.enabled"]}).status == "completed"
    assert not conf.exists()
