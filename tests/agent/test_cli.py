"""The installed package: `pip install` of agent/ gives a `governance-agent` console script that
needs only requests; its commands, the example configuration and the systemd unit."""

import json
import socket
import subprocess
import sys
from email.parser import Parser

from governance_agent.cli import _parser
from governance_agent.config import load

from .conftest import ROOT, agent_cli, require_tools

PACKAGING = ROOT / "agent/packaging"


def test_the_package_has_a_console_script_and_needs_only_requests(installed):
    script, site, _env = installed
    (dist,) = site.glob("governance_agent-*.dist-info")
    meta = Parser().parsestr((dist / "METADATA").read_text())
    assert meta.get_all("Requires-Dist") == ["requests>=2.28"]
    assert meta["Requires-Python"] == ">=3.11"
    assert agent_cli(installed, "--version").stdout.strip() == "governance-agent 1.0.0"
    # Nothing of the panel: every module imports with Django and the panel's apps made unimportable.
    modules = sorted(
        ".".join(p.relative_to(site).with_suffix("").parts) for p in (site / "governance_agent").rglob("*.py")
    )
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in ("django", "rest_framework", "fleet", "common"))
    code = f"import sys, importlib; {blocked}; [importlib.import_module(m) for m in {modules!r} if not m.endswith('__main__')]"
    result = subprocess.run([sys.executable, "-c", code], env=_env, capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert len(modules) >= 20


def test_state_print_shows_what_would_be_reported(installed, scratch):
    scratch.package("gov-web", "1:2.0-1")
    scratch.base_files(11)
    scratch.install("gov-web", "base-files")
    config = scratch.base / "agent.toml"
    config.write_text(
        f"""
[panel]
url = "https://panel.example.com"
name = "web-01"
[agent]
state_dir = "{scratch.base}/state"
[system]
root = "{scratch.root}"
apt_config = "{scratch.apt_config}"
"""
    )
    result = agent_cli(installed, "state", "--print", "-c", str(config), "--dry-run")
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["os_version"] == "12.11"
    assert state["apps"] == [
        {"name": "base-files", "running": True, "version": "12.4+deb12u11"},
        {"name": "gov-web", "running": True, "version": "2.0-1"},
    ]
    assert state["agent_version"] == "1.0.0 (dry-run)"
    assert not (scratch.base / "state/state.json").exists()  # printing writes nothing


def test_a_bad_configuration_names_every_problem_and_exits_2(installed, tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(
        '[panel]\nurl = "http://panel"\nname = "-bad"\ncolour = 1\n[health]\nlisten = "nowhere"\n'
        '[[health.checks]]\ntype = "tcp"\nport = 70000\n'
    )
    result = agent_cli(installed, "status", "-c", str(config))
    assert result.returncode == 2
    for problem in (
        "panel.colour: unknown key",
        "panel.url: plain http:// is refused",
        "panel.name: letters, digits",
        "health.checks[0].port: must be a port number 1-65535",
        "health.listen: must be address:port",
    ):
        assert problem in result.stderr
    assert f"{config}: 5 problems:" in result.stderr


def test_status_says_what_is_missing(installed, scratch):
    config = scratch.base / "agent.toml"
    config.write_text(
        f'[panel]\nurl = "https://panel.example.com"\nname = "w"\n[agent]\nstate_dir = "{scratch.base}/s"\n'
        f'credential_file = "{scratch.base}/s/c.json"\n'
    )
    result = agent_cli(installed, "status", "-c", str(config))
    assert result.returncode == 1
    assert "registered:   no" in result.stdout and "last answer:  never" in result.stdout
    assert "health:       ok" in result.stdout


def test_a_readable_configuration_holding_a_token_is_warned_about(installed, scratch):
    config = scratch.base / "agent.toml"
    config.write_text(
        f'[panel]\nurl = "https://p.example.com"\nname = "w"\nregistration_token = "reg_a_b"\n'
        f'[agent]\nstate_dir = "{scratch.base}/s"\ncredential_file = "{scratch.base}/s/c.json"\n'
    )
    config.chmod(0o644)
    assert f"holds the registration token and others can read it: chmod 600 {config}" in (
        agent_cli(installed, "status", "-c", str(config)).stderr
    )
    config.chmod(0o600)
    assert "warning" not in agent_cli(installed, "status", "-c", str(config)).stderr


def test_a_health_port_another_program_holds_is_said_plainly(installed, scratch):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = scratch.base / "agent.toml"
        config.write_text(
            f'[panel]\nurl = "https://p.example.com"\nname = "w"\n[agent]\nstate_dir = "{scratch.base}/s"\n'
            f'credential_file = "{scratch.base}/s/c.json"\n[health]\nlisten = "127.0.0.1:{port}"\n'
        )
        result = agent_cli(installed, "run", "-c", str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        f"governance-agent: cannot serve the health endpoint on 127.0.0.1:{port}: Address already in use "
        "(another program listens there, or the address is not this machine's): change health.listen"
    ) in result.stderr


def test_run_refuses_a_credential_others_can_read_before_it_opens_the_health_port(installed, scratch):
    config = scratch.base / "agent.toml"
    config.write_text(
        f'[panel]\nurl = "https://p.example.com"\nname = "w"\n[agent]\nstate_dir = "{scratch.base}/s"\n'
        f'credential_file = "{scratch.base}/s/c.json"\n[health]\nlisten = "127.0.0.1:0"\n'
    )
    (scratch.base / "s").mkdir()
    credential = scratch.base / "s/c.json"
    credential.write_text('{"credential": "k.s"}')
    credential.chmod(0o640)
    result = agent_cli(installed, "run", "-c", str(config))
    assert result.returncode == 1
    assert f"{credential} is readable by others (mode 0640): run `chmod 600 {credential}`" in result.stderr
    assert "health endpoint" not in result.stderr


def test_options_work_before_and_after_the_command():
    assert _parser().parse_args(["--dry-run", "run"]).dry_run is True
    assert _parser().parse_args(["run", "--dry-run"]).dry_run is True
    assert _parser().parse_args(["run"]).dry_run is False


def test_the_example_configuration_is_valid_and_the_unit_runs_the_console_script():
    config = load(PACKAGING / "agent.toml.example")
    assert config.panel_url == "https://panel.example.com" and config.health_checks[0].target == "ssh.service"
    unit = (PACKAGING / "governance-agent.service").read_text()
    assert "ExecStart=/usr/local/bin/governance-agent run" in unit
    assert "KillMode=process" in unit and "Restart=always" in unit


def test_systemd_reads_the_unit_without_a_complaint(installed, tmp_path):
    """systemd is not PID 1 here, but its own parser runs offline: `systemd-analyze verify` names every
    unknown key or unparsable value (and a missing ExecStart program). ExecStart points at the
    pip-installed console script, as the README's symlink does."""
    require_tools("systemd-analyze")
    script, _site, _env = installed
    unit = tmp_path / "governance-agent.service"
    text = (PACKAGING / "governance-agent.service").read_text()
    unit.write_text(text.replace("/usr/local/bin/governance-agent", str(script)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_development_launcher_writes_a_dry_run_configuration(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "agent"))
    import dev_agent

    monkeypatch.setattr(dev_agent.socket, "gethostname", lambda: "my laptop.local")
    path = dev_agent.write_config(tmp_path / "agent", "http://127.0.0.1:8000", "reg_a_b")
    config = load(path, insecure_dev=True)
    assert config.name == "local-my-laptop" and config.panel_url == "http://127.0.0.1:8000"
    assert config.credential_file == str(tmp_path / "agent/credential.json")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
