"""`make run AGENT=local`: one real agent, in dry-run mode, reporting the machine it runs on.

Development only, not part of the installed package. Writes `<dir>/agent.toml` (plain http:// to the
local panel, state and credential under `<dir>`, every package reported, a health endpoint on a free
loopback port) and runs `governance-agent --dry-run --insecure-dev run` with it: the panel sees this
machine's real state, and every command sent to it is only planned (its run fails with the plan).
Run as a script, its directory (agent/) is on sys.path, so the package needs no installing.
"""

import argparse
import json
import re
import socket
import sys
from pathlib import Path

import requests
from governance_agent.cli import main as agent_main


def write_config(directory: Path, panel: str, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = "local-" + (re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]) or "machine")
    config = directory / "agent.toml"
    config.write_text(
        f"""# Written by agent/dev_agent.py for `make run AGENT=local`; rewritten at each start.
[panel]
url = "{panel}"
registration_token = "{token}"
name = "{name[:100]}"
command_poll_interval = 2
[agent]
state_dir = "{directory}"
credential_file = "{directory}/credential.json"
managed_settings_file = "{directory}/managed-settings.json"
[report]
sysctl = ["net.ipv4.ip_forward", "kernel.randomize_va_space"]
apt_update_interval = 0
[health]
listen = "127.0.0.1:0"
"""
    )
    config.chmod(0o600)
    return config


def drop_refused_credential(directory: Path, panel: str) -> bool:
    """Forget the saved credential when the panel no longer knows it (`make clean` emptied its
    database, or the server was deleted): the development agent then registers afresh instead of
    waiting, as an installed agent does, for `register --force`. The question asked changes nothing:
    a heartbeat naming no state (If-Match) is 401 for an unknown credential, 412 for a known one."""
    path = directory / "credential.json"
    try:
        credential = json.loads(path.read_text())["credential"]
        answer = requests.post(
            f"{panel}/api/agent/heartbeat",
            headers={"Authorization": f"Agent {credential}", "If-Match": '"-"', "Accept": "application/json"},
            timeout=10,
        )
    except (OSError, ValueError, KeyError, TypeError, requests.RequestException):
        return False
    if answer.status_code != 401:
        return False
    path.unlink()
    print(f"dev_agent: {panel} does not know the saved credential; registering again", file=sys.stderr)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", default="http://127.0.0.1:8000")
    parser.add_argument("--dir", default="var/agent", help="where the configuration, state and credential go")
    parser.add_argument("--token-file", default="var/sim-token.txt", help="a multi-use registration token")
    args = parser.parse_args(argv)
    token = Path(args.token_file).read_text().strip()
    config = write_config(Path(args.dir).resolve(), args.panel, token)
    drop_refused_credential(Path(args.dir).resolve(), args.panel)
    return agent_main(["--dry-run", "--insecure-dev", "-c", str(config), "run"])


if __name__ == "__main__":
    sys.exit(main())
