"""`make run`: web server, Celery worker, Celery beat and a simulated fleet, as one foreground command."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

STOP_GRACE_SECONDS = 10


class Command(BaseCommand):
    help = "Start the web server, a Celery worker, Celery beat and `simulate_fleet`; Ctrl-C stops them all."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument(
            "--fleet", type=int, default=int(os.environ.get("FLEET", 20)), help="Simulated instances (0: none)"
        )
        parser.add_argument("--gunicorn", action="store_true", help="Serve with gunicorn instead of runserver")
        parser.add_argument(
            "--agent",
            choices=["", "local"],
            default=os.environ.get("AGENT", ""),
            help="local: instead of the simulated fleet, one real agent (agent/) in dry-run mode reporting this machine",
        )

    def handle(self, port, fleet, gunicorn, agent="", **options):
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

        procs: dict[str, subprocess.Popen] = {}
        stopping = False

        def on_signal(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            for name, cmd in children.items():
                log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it; closed on exit
                # A session of its own: Ctrl-C reaches run_all only, which then stops each child in order.
                procs[name] = subprocess.Popen(
                    cmd,
                    cwd=settings.BASE_DIR,
                    env=os.environ.copy(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                log.close()
                if name == "web":
                    self._wait_web(url, procs["web"], logs / "web.log")
            self._banner(url, var, logs, fleet, agent)
            failed = None
            while not stopping and failed is None:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        failed = name
                        break
                else:
                    time.sleep(0.5)
            if failed:
                code = procs[failed].returncode
                self.stderr.write(self.style.ERROR(f"{failed} exited with code {code}; stopping the others."))
                self.stderr.write(self._tail(logs / f"{failed}.log"))
                raise CommandError(f"{failed} stopped unexpectedly (exit code {code}); see {logs / failed}.log")
        finally:
            self._stop_all(procs)
        self.stdout.write("All stopped.")

    def _wait_web(self, url, proc, log_path, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CommandError(f"The web server exited (code {proc.returncode}):\n{self._tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:  # noqa: S310 - our own URL
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise CommandError(f"The web server did not answer on {url} within {timeout}s:\n{self._tail(log_path)}")

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

    def _stop_all(self, procs):
        """SIGTERM every child (the simulator first, the web server last), then SIGKILL stragglers."""
        for name in reversed(list(procs)):
            proc = procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def _tail(path: Path, lines: int = 30) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
