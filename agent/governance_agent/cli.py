"""`governance-agent register | run | status | state --print`.

Exit status: 0 done, 1 the agent could not do it (the message says why), 2 the configuration or the
command line is wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import stat
import sys

from . import __version__
from .config import ConfigError, load
from .daemon import Agent, AgentError, acquire_lock
from .health import Checker
from .panel import PanelError
from .store import CredentialError, State, load_credential
from .system import Host


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command. After it, they default to SUPPRESS: otherwise the
    subcommand's default (False) would overwrite `governance-agent --dry-run run`'s True."""
    common = argparse.ArgumentParser(add_help=False)
    default = {"default": argparse.SUPPRESS} if suppress else {}
    common.add_argument(
        "-c", "--config", help="the configuration file (default /etc/governance-agent/agent.toml)", **default
    )
    common.add_argument(
        "--dry-run", action="store_true", help="report the state and plan commands; change nothing", **default
    )
    common.add_argument(
        "--insecure-dev", action="store_true", help="allow plain http:// to the panel (development)", **default
    )
    common.add_argument("--state-dir", help="override agent.state_dir", **default)
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging", **default)
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(suppress=True)
    parser = argparse.ArgumentParser(
        prog="governance-agent",
        parents=[_common(suppress=False)],
        description="The fleet governance panel's agent for Debian and Ubuntu.",
    )
    parser.add_argument("--version", action="version", version=f"governance-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    reg = sub.add_parser("register", parents=[common], help="register this server with the panel (once)")
    reg.add_argument("--token", help="registration token (default: panel.registration_token)")
    reg.add_argument("--force", action="store_true", help="register again, replacing the saved credential")
    sub.add_parser("run", parents=[common], help="run the agent in the foreground (what systemd starts)")
    sub.add_parser("status", parents=[common], help="registration, the panel's last answer, health checks")
    state = sub.add_parser("state", parents=[common], help="the state this server reports")
    state.add_argument("--print", action="store_true", dest="print_state", help="print it as JSON (the default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load(
            args.config,
            insecure_dev=args.insecure_dev,
            overrides={"state_dir": args.state_dir and os.path.abspath(args.state_dir)},
        )
    except ConfigError as exc:
        print(f"governance-agent: {exc}", file=sys.stderr)
        return 2
    if not args.verbose:
        logging.getLogger().setLevel(config.log_level.upper())
    _warn_if_token_readable(config)
    try:
        return COMMANDS[args.command](config, args)
    except (AgentError, CredentialError, PanelError) as exc:
        print(f"governance-agent: {exc}", file=sys.stderr)
        return 1


def _warn_if_token_readable(config) -> None:
    try:
        mode = os.stat(config.source).st_mode
    except OSError:
        return
    if config.registration_token and mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(
            f"governance-agent: warning: {config.source} holds the registration token and others can read it: "
            f"chmod 600 {config.source}",
            file=sys.stderr,
        )


def cmd_register(config, args) -> int:
    lock = acquire_lock(config.state_dir)
    try:
        agent = Agent(config, dry_run=args.dry_run, insecure_dev=args.insecure_dev)
        data = agent.register(token=args.token or "", force=args.force)
        agent.state.save()
    finally:
        lock.close()
    print(
        f"registered as {data['name']} (instance {data['instance_id']}); credential saved in {config.credential_file}"
    )
    return 0


def cmd_run(config, args) -> int:
    lock = acquire_lock(config.state_dir)
    agent = Agent(config, dry_run=args.dry_run, insecure_dev=args.insecure_dev)
    try:
        agent.load_registration()  # a credential file others can read stops it before it listens
    except CredentialError:
        lock.close()
        raise

    def on_signal(signum, frame):
        logging.getLogger("governance_agent").info("stopping (signal %s)", signum)
        agent.stopping.set()
        agent._wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent.start()
        print(f"health endpoint: {agent.health_address()}{config.health_path}", file=sys.stderr, flush=True)
        agent.run_forever()
    finally:
        agent.stop()
        lock.close()
    return 0


def cmd_status(config, args) -> int:
    registration = load_credential(config.credential_file)
    state = State(config.state_file, read_only=True).data
    panel = state.get("panel", {})
    healthy, body = Checker(Host.from_config(config)).run()
    report = state.get("last_report", {})
    pending = [k for k, v in state.get("runs", {}).items() if "result" in v and not v.get("reported")]
    lines = [
        f"panel:        {config.panel_url}",
        "registered:   "
        + (f"as {registration.get('name')} (instance {registration.get('instance_id')})" if registration else "no"),
        f"last answer:  {panel.get('last_ok_at') or 'never'}",
    ]
    if panel.get("error"):
        lines.append(f"panel error:  {panel['error']} (since {panel.get('error_since')})")
    lines.append(f"last report:  {report.get('at') or 'never'}")
    lines += [f"  problem:    {p}" for p in report.get("problems", [])]
    lines.append(f"results not yet delivered: {len(pending)}" + (f" (runs {', '.join(pending)})" if pending else ""))
    lines.append(f"health:       {'ok' if healthy else 'FAILING: ' + body.get('failed', '')}")
    lines += [
        f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']}{': ' + c['reason'] if c['reason'] else ''}"
        for c in body["checks"]
    ]
    print("\n".join(lines))
    return 0 if registration and not panel.get("error") and healthy else 1


def cmd_state(config, args) -> int:
    from .sources import Collector

    collector = Collector(Host.from_config(config), State(config.state_file, read_only=True), dry_run=args.dry_run)
    report = collector.collect()
    print(json.dumps(report.payload, indent=2, sort_keys=True))
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


COMMANDS = {"register": cmd_register, "run": cmd_run, "status": cmd_status, "state": cmd_state}
