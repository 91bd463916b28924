"""`make run`: web server, Celery worker, Celery beat and a simulated fleet, as one foreground command.

The children are supervised (common/supervisor.py): one that exits is restarted with backoff.
"""

import os
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from common.supervisor import FIRST_BACKOFF, Supervisor, tail


class Command(BaseCommand):
    help = (
        "Start the web server, a Celery worker, Celery beat and `simulate_fleet`, restart any that exits; "
        "Ctrl-C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument(
            "--fleet", type=int, default=int(os.environ.get("FLEET", 20)), help="Simulated instances (0: none)"
        )
        parser.add_argument("--gunicorn", action="store_true", help="Serve with gunicorn instead of runserver")
        parser.add_argument(
            "--restart-delay",
            type=float,
            default=FIRST_BACKOFF,
            help="Seconds before restarting a child that exited; doubles while it keeps exiting (up to 60)",
        )
        parser.add_argument(
            "--agent",
            choices=["", "local"],
            default=os.environ.get("AGENT", ""),
            help="local: instead of the simulated fleet, one real agent (agent/) in dry-run mode reporting this machine",
        )

    def handle(self, port, fleet, gunicorn, agent="", restart_delay=FIRST_BACKOFF, **options):
        var = Path(settings.VAR_DIR)
        logs = var / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}"
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        if gunicorn:
            web = [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "3",
                "--access-logfile",
                "-",
            ]
        else:
            web = [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"]
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        children = {
            "web": web,
            "worker": [
                *celery,
                "worker",
                "-l",
                "info",
                "-P",
                "threads",
                "-c",
                "4",
                "--without-gossip",
                "--without-mingle",
            ],
            "beat": [*celery, "beat", "-l", "info", "-s", str(var / "celerybeat-schedule")],
        }
        if agent == "local":
            fleet = 0
            dev_agent = Path(settings.BASE_DIR) / "agent" / "dev_agent.py"
            children["agent"] = [sys.executable, str(dev_agent), "--panel", url, "--dir", str(var / "agent")]
            children["agent"] += ["--token-file", str(var / "sim-token.txt")]
        if fleet:
            children["fleet"] = [*manage, "simulate_fleet", "--url", url, "--count", str(fleet), "--demo-layout"]

        supervisor = Supervisor(
            cwd=Path(settings.BASE_DIR), env=os.environ.copy(), say=self._say, first_backoff=restart_delay
        )
        supervisor.install_signal_handlers()
        try:
            for name, cmd in children.items():
                child = supervisor.start(name, cmd, logs / f"{name}.log")
                if name == "web":
                    self._wait_web(url, child.proc, child.log_path)
            self._banner(url, var, logs, fleet, agent)
            supervisor.run()  # restarts what exits, until Ctrl-C or SIGTERM
        finally:
            supervisor.stop_all()
        self.stdout.write(f"All stopped ({supervisor.summary()}).")

    def _say(self, text: str, error: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        (self.stderr if error else self.stdout).write(f"[{stamp}] {text}")
        (self.stderr if error else self.stdout).flush()

    def _wait_web(self, url, proc, log_path, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CommandError(f"The web server exited (code {proc.returncode}):\n{tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:  # noqa: S310 - our own URL
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise CommandError(f"The web server did not answer on {url} within {timeout}s:\n{tail(log_path)}")

    def _banner(self, url, var, logs, fleet, agent=""):
        password_file = var / "admin-password.txt"
        password = password_file.read_text().strip() if password_file.exists() else "(run manage.py bootstrap_demo)"
        self.stdout.write(self.style.SUCCESS(f"\nFleet governance panel: {url}/"))
        self.stdout.write(f"  sign in as admin / {password}")
        self.stdout.write(f"  API docs: {url}/api/docs/")
        if fleet:
            self.stdout.write(f"  simulated fleet: {fleet} instances (they come online within a few seconds)")
        if agent:
            self.stdout.write("  agent: this machine, in dry-run mode (logs/agent.log); commands are only planned")
        self.stdout.write(f"  logs: {logs}/{{web,worker,beat,fleet}}.log")
        self.stdout.write("Press Ctrl-C to stop.\n")
        self.stdout.flush()
