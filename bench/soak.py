"""Soak: the embedded stack (`manage.py run_all`: web, worker, beat, simulated fleet) under continuous work.

What `make run` runs, on a private VAR_DIR (SQLite + the embedded broker, no DATABASE_URL or broker URL
from the environment), for `--minutes` (default 3) or `--hours`. The work while it runs:
  * heartbeats: the simulated fleet (`--fleet`, default 20 instances, every 5 s), and the evaluations
    their state changes enqueue; beat's own schedule (offline marking, time-based evaluation, canary
    and GitOps scans);
  * evaluations: a whole-fleet evaluation task every `--evaluate-every` seconds (default 60);
  * a canary deployment (update_app monitoring-agent to the other version, 25 % then the rest) every
    `--canary-every` seconds (default 120);
  * marker tasks: `celery.accumulate` with a known id every 2 s, sent from this process through the
    broker like any producer; each must appear as succeeded in the worker log. Sent minus succeeded
    (after a drain at the end) is the lost-task count.
  * GitOps: a repository served by a private sshd on loopback (tests/gitops/sshd.py), synced by beat
    every 60 s, with a commit flipping `auto_updates.enabled` every `--gitops-every` seconds (default
    180), so syncs apply changes and queue commands to the fleet. Skipped (and said) without sshd/git.

Reported: restarts of each child (run_all's supervisor lines), tasks received/succeeded/failed in the
worker log, ERROR/CRITICAL lines per log, broker decode errors, "No hostname was supplied" warnings,
marker tasks sent/completed/lost, canaries by outcome. OK means 0 restarts, 0 lost, 0 task errors.

    .venv/bin/python bench/soak.py [--minutes 3 | --hours 2] [--port 8765] [--var DIR]
"""

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import report  # noqa: E402

LOGS = ("web", "worker", "beat", "fleet")
TASK_LINE = re.compile(r"Task ([\w.]+)\[([\w-]+)\] (received|succeeded|raised|retry)")
DISCARDED_LINE = re.compile(r"Discarding revoked task: ([\w.]+)\[")
ERROR_LINE = re.compile(r"(^|[\s:/])(ERROR|CRITICAL)[/\s]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(var: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL")}
    # What `make run` runs: development mode (keys generated into VAR_DIR).
    env.update(VAR_DIR=str(var), DEBUG="true", PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="config.settings")
    return env


def manage(env, *args):
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310
            return
        time.sleep(0.5)
    raise SystemExit(f"{url}/healthz did not answer within {timeout} s")


class Workload:
    """The soak's own producer: Django set up in this process on the same VAR_DIR."""

    def __init__(self):
        import django

        django.setup()
        from config.celery import app

        self.app = app
        self.markers_sent = 0
        self.canaries: list[int] = []
        self.canary_refused = Counter()
        self.version = "2.4.0"
        self.gitops = None  # (server, repo work tree, Repository pk) once set up
        self.gitops_commits = 0

    def gitops_setup(self, work: Path) -> str:
        from tests.gitops.sshd import GitRepo, SSHServer, tools_available

        if not tools_available():
            return "skipped: no sshd/git/ssh-keygen on this machine"
        from gitops import services
        from gitops.choices import ConflictStrategy
        from gitops.sshkeys import generate_keypair

        server = SSHServer(work / "sshd").start()
        repo_dir = GitRepo(work / "git")
        repo_dir.write_config("fleet.yaml", {"ntp.enabled": True})
        repo_dir.commit("soak: first")
        private, public = generate_keypair()
        server.authorize(public)
        host_pub = server.host_key_path.with_suffix(".pub").read_text().split()
        repo = services.repository_connect(
            actor=None,
            name="soak",
            url=server.url(repo_dir),
            branch="main",
            sync_interval=60,
            conflict_strategy=ConflictStrategy.GIT_WINS,
            auth_method="uploaded",
            private_key=private,
            known_hosts=" ".join(host_pub[:2]),
        )
        self.gitops = (server, repo_dir, repo.pk)
        return f"repository {server.url(repo_dir)}, synced every 60 s"

    def gitops_commit(self) -> None:
        if self.gitops:
            self.gitops_commits += 1
            _server, repo_dir, _pk = self.gitops
            repo_dir.write_config(
                "fleet.yaml", {"ntp.enabled": True, "auto_updates.enabled": self.gitops_commits % 2 == 1}
            )
            repo_dir.commit(f"soak: change {self.gitops_commits}")

    def gitops_runs(self) -> Counter:
        if not self.gitops:
            return Counter()
        from gitops.models import SyncRun

        return Counter(SyncRun.objects.filter(repository_id=self.gitops[2]).values_list("status", flat=True))

    def close(self) -> None:
        if self.gitops:
            self.gitops[0].stop()

    def marker(self) -> None:
        self.markers_sent += 1
        self.app.send_task("celery.accumulate", args=(self.markers_sent,), task_id=f"soak-{self.markers_sent}")

    def evaluate(self) -> None:
        from governance.tasks import evaluate_fleet_task

        evaluate_fleet_task.delay()

    def canary(self) -> None:
        from canary import services
        from common.exceptions import ApplicationError
        from fleet.models import Instance
        from fleet.scopes import Scope, ScopeKind

        ids = tuple(Instance.objects.filter(name__startswith="sim-").values_list("pk", flat=True))
        if not ids:
            self.canary_refused["no instances yet"] += 1
            return
        self.version = "2.3.1" if self.version == "2.4.0" else "2.4.0"
        try:
            deployment = services.canary_create(
                actor=None,
                kind="update_app",
                params={"app": "monitoring-agent", "version": self.version},
                scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=ids),
                percentage=25,
                criteria=["online", "health_check"],
                check_interval=5,
                max_duration=110,
                name=f"soak {len(self.canaries) + 1}",
            )
        except ApplicationError as exc:
            self.canary_refused[exc.code if hasattr(exc, "code") else type(exc).__name__] += 1
            return
        self.canaries.append(deployment.pk)

    def canary_outcomes(self) -> Counter:
        from canary.models import CanaryDeployment

        phases = CanaryDeployment.objects.filter(pk__in=self.canaries).values_list("phase", flat=True)
        return Counter(str(p) for p in phases)


def parse_logs(logs: Path) -> dict:
    tasks = {k: Counter() for k in ("received", "succeeded", "raised", "retry", "expired")}
    marker_ids = set()
    errors, decode_errors, hostname_warnings = Counter(), 0, 0
    for name in LOGS:
        path = logs / f"{name}.log"
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if ERROR_LINE.search(line):
                errors[name] += 1
            decode_errors += "JSONDecodeError" in line
            hostname_warnings += "No hostname was supplied" in line
            if name == "worker" and (m := DISCARDED_LINE.search(line)):
                tasks["expired"][m.group(1)] += 1
            if name == "worker" and (m := TASK_LINE.search(line)):
                tasks[m.group(3)][m.group(1)] += 1
                if m.group(3) == "succeeded" and m.group(2).startswith("soak-"):
                    marker_ids.add(m.group(2))
    return {
        "tasks": tasks,
        "markers_done": marker_ids,
        "errors": errors,
        "decode_errors": decode_errors,
        "hostname_warnings": hostname_warnings,
    }


def queued(var: Path) -> int:
    """Messages waiting in the embedded broker (after a stop: what the worker handed back, e.g. ETA tasks)."""
    folder = var / "celery" / "queue"
    return sum(1 for _ in folder.glob("*.msg")) if folder.is_dir() else 0


def restarts(run_all_log: Path) -> Counter:
    counts = Counter()
    for line in run_all_log.read_text(errors="replace").splitlines():
        if m := re.search(r"\] (\w+) restarted \(restart", line):
            counts[m.group(1)] += 1
    return counts


def print_table(rows: list[tuple[str, object]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--hours", type=float, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fleet", type=int, default=20)
    parser.add_argument("--var", default="", help="VAR_DIR (default: a fresh temporary folder)")
    parser.add_argument("--canary-every", type=float, default=120)
    parser.add_argument("--evaluate-every", type=float, default=60)
    parser.add_argument("--gitops-every", type=float, default=180)
    parser.add_argument("--report-every", type=float, default=600, help="print the figures so far (s)")
    args = parser.parse_args()
    seconds = args.hours * 3600 if args.hours else args.minutes * 60
    var = Path(args.var or tempfile.mkdtemp(prefix="soak-"))
    var.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    env = embedded_env(var)
    os.environ.update(env)
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
        os.environ.pop(key, None)
    print(f"soak: {seconds / 60:.0f} min on 127.0.0.1:{port}, VAR_DIR {var}", flush=True)
    for command in (["migrate", "--noinput"], ["bootstrap_demo"], ["seed_demo_policies"]):
        manage(env, *command)
    run_all_log = var / "run_all.log"
    with open(run_all_log, "ab") as out:
        stack = subprocess.Popen(
            [sys.executable, "manage.py", "run_all", "--port", str(port), "--fleet", str(args.fleet)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        work = Workload()
        print(f"gitops: {work.gitops_setup(var / 'gitops')}", flush=True)
        figures = drive(work, stack, var, started, seconds, args)
    finally:
        if "work" in locals():
            work.close()
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGTERM)
            stack.wait(timeout=60)
    figures["run_all exit"] = stack.returncode
    print(f"\nsoak finished after {(time.monotonic() - started) / 60:.1f} min", flush=True)
    ok = summarize(work, var, run_all_log, started, final=True)
    return 0 if ok else 1


def drive(work: Workload, stack, var: Path, started: float, seconds: float, args) -> dict:
    next_marker = next_eval = time.monotonic()
    next_canary = time.monotonic() + 30  # the fleet registers first
    next_report = time.monotonic() + args.report_every
    next_commit = time.monotonic() + 45
    while time.monotonic() - started < seconds:
        if stack.poll() is not None:
            print(f"run_all itself exited (code {stack.returncode})", flush=True)
            break
        now = time.monotonic()
        if now >= next_marker:
            work.marker()
            next_marker = now + 2
        if now >= next_eval:
            work.evaluate()
            next_eval = now + args.evaluate_every
        if now >= next_canary:
            work.canary()
            next_canary = now + args.canary_every
        if now >= next_commit:
            work.gitops_commit()
            next_commit = now + args.gitops_every
        if now >= next_report:
            summarize(work, var, var / "run_all.log", started, final=False)
            next_report = now + args.report_every
        time.sleep(0.2)
    # Drain: the last markers need a moment to run.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(parse_logs(var / "logs")["markers_done"]) < work.markers_sent:
        time.sleep(1)
    return {}


def summarize(work: Workload, var: Path, run_all_log: Path, started: float, *, final: bool) -> bool:
    parsed = parse_logs(var / "logs")
    restart_counts = restarts(run_all_log)
    done = len(parsed["markers_done"])
    # Mid-run, the markers of the last few seconds may still be in flight.
    lost = work.markers_sent - done
    tasks = parsed["tasks"]
    failed = sum(tasks["raised"].values())
    unfinished = sum(tasks["received"].values()) - sum(tasks["succeeded"].values()) - failed
    unfinished -= sum(tasks["expired"].values())
    heartbeats = sum(
        1 for line in (var / "logs" / "web.log").read_text(errors="replace").splitlines() if "/heartbeat" in line
    )
    label = "final" if final else "so far"
    print(f"\n== soak figures ({label}, {(time.monotonic() - started) / 60:.1f} min)", flush=True)
    print_table(
        [
            ("process restarts", dict(restart_counts) or 0),
            ("marker tasks sent", work.markers_sent),
            ("marker tasks completed", done),
            ("marker tasks lost" if final else "marker tasks not yet seen", lost),
            ("tasks received (worker)", sum(tasks["received"].values())),
            ("tasks succeeded", sum(tasks["succeeded"].values())),
            ("tasks failed (raised)", failed),
            ("tasks retried", sum(tasks["retry"].values())),
            (
                "tasks received, not finished (ETA, in flight)",
                sum(tasks["received"].values()) - sum(tasks["succeeded"].values()) - failed,
            ),
            ("messages in the broker queue" + (" after stop" if final else ""), queued(var)),
            ("ERROR/CRITICAL log lines", dict(parsed["errors"]) or 0),
            ("broker JSONDecodeError", parsed["decode_errors"]),
            ("'No hostname was supplied'", parsed["hostname_warnings"]),
            ("agent heartbeat requests (web log)", heartbeats),
            ("canaries started", len(work.canaries)),
            ("canaries by phase", dict(work.canary_outcomes()) or 0),
            ("canaries refused", dict(work.canary_refused) or 0),
            ("gitops commits pushed", work.gitops_commits),
            ("gitops sync runs by status", dict(work.gitops_runs()) or 0),
        ]
    )
    for name, count in tasks["received"].most_common():
        print(f"    {name:<48} received {count:>6}  succeeded {tasks['succeeded'][name]:>6}")
    sys.stdout.flush()
    ok = not restart_counts and lost == 0 and failed == 0 and parsed["decode_errors"] == 0
    if final:
        report(
            "soak: lost tasks (0 restarts, 0 task errors)",
            lost,
            "tasks",
            "0",
            ok,
            ratio=None,
            ratio_target=f"{(time.monotonic() - started) / 60:.0f} min",
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
