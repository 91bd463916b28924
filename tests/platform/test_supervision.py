"""`manage.py run_all` (what `make run` starts) with real processes: supervision and the liveness banner.

The stack is the embedded one whatever the test database is: SQLite and the embedded broker in a VAR_DIR
of its own. Heartbeats every second, stale after three, so that a killed worker shows within seconds.
"""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from common.supervisor import Supervisor
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, var: Path):
        self.var, self.port = var, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL")}
        self.env.update(VAR_DIR=str(var), LIVENESS_INTERVAL="1", LIVENESS_STALE_SECONDS="3", PYTHONUNBUFFERED="1")
        self.output = var / "run_all.out"

    def manage(self, *args):
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True)

    def start(self):
        self.manage("migrate", "--noinput")
        self.manage("bootstrap_demo")
        cmd = [sys.executable, "manage.py", "run_all", "--port", str(self.port), "--fleet", "0", "--restart-delay", "3"]
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "Press Ctrl-C to stop" in self.text(), timeout=120, message=f"run_all started: {self.text()}")
        self.session = requests.Session()
        self.session.get(f"{self.url}/accounts/login/", timeout=10)
        password = (self.var / "admin-password.txt").read_text().strip()
        response = self.session.post(
            f"{self.url}/accounts/login/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/accounts/login/"},
            timeout=10,
        )
        assert response.url.rstrip("/") == self.url, response.text[:2000]
        return self

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def banner(self) -> str:
        page = self.session.get(f"{self.url}/", timeout=10).text
        match = re.search(r'id="liveness-banner">(.*?)</div>', page, re.S)
        return match.group(1).strip() if match else ""

    def heartbeat(self, component) -> tuple[int, str]:
        with sqlite3.connect(self.var / "db.sqlite3", timeout=20) as db:
            row = db.execute(
                "SELECT pid, last_seen FROM common_processheartbeat WHERE component = ? ORDER BY last_seen DESC",
                [component],
            ).fetchone()
        return (row[0], row[1]) if row else (0, "")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path).start()
    yield stack
    stack.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by run_all) is not alive.
    return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_a_killed_worker_is_restarted_and_the_banner_shows_while_it_is_down(stack):
    wait_for(lambda: stack.banner() == "", timeout=60, message="worker and beat seen (no banner)")
    old_pid = stack.heartbeat("worker")[0]
    assert old_pid and _alive(old_pid)

    os.kill(old_pid, signal.SIGKILL)
    banner = wait_for(stack.banner, timeout=10, interval=0.1, message="the banner while the worker is down")
    assert "The Celery worker has not been seen for" in banner
    assert "Celery beat" not in banner

    # Back within 10 s: a new worker process running (its boot, Django and all, can take longer on a
    # loaded machine, so its first heartbeat gets more time).
    wait_for(lambda: "worker restarted (restart 1" in stack.text(), timeout=10, message="the worker restarted")
    new_pid = int(re.search(r"worker restarted \(restart 1, pid (\d+)\)", stack.text()).group(1))
    assert new_pid != old_pid and _alive(new_pid)
    wait_for(lambda: stack.heartbeat("worker")[0] == new_pid, timeout=60, message="the new worker's heartbeat")
    wait_for(lambda: stack.banner() == "", timeout=30, message="the banner gone once the worker is back")

    out = stack.text()
    assert "worker (killed by SIGKILL)" in out
    assert "restarting in 3 s" in out
    assert "Last lines of" in out and "worker.log" in out
    assert "web (" not in out and "beat (" not in out  # the others kept running


def test_ctrl_c_stops_every_child_within_seconds_and_no_log_warns_of_a_missing_hostname(stack):
    wait_for(lambda: stack.heartbeat("worker")[0] and stack.heartbeat("beat")[0], timeout=60, message="heartbeats")
    pids = [stack.heartbeat("worker")[0], stack.heartbeat("beat")[0]]
    started = time.monotonic()
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=30) == 0
    stopped_after = time.monotonic() - started
    assert stopped_after < 15, f"stopped after {stopped_after:.1f} s"
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stack.url}/healthz", timeout=2)
    assert "All stopped (web: 0 restart(s), worker: 0 restart(s), beat: 0 restart(s))" in stack.text()
    logs = {path.name: path.read_text(errors="replace") for path in (stack.var / "logs").glob("*.log")}
    assert set(logs) >= {"web.log", "worker.log", "beat.log"}
    assert [name for name, text in logs.items() if "No hostname was supplied" in text] == []


def test_a_child_that_keeps_exiting_is_restarted_with_growing_delays(tmp_path):
    said = []
    supervisor = Supervisor(
        cwd=tmp_path, env=dict(os.environ), say=lambda text, error=False: said.append(text), first_backoff=0.2
    )
    supervisor.start("flaky", [sys.executable, "-c", "print('about to fail'); raise SystemExit(3)"], tmp_path / "f.log")

    def stop_after_three_restarts():
        wait_for(lambda: supervisor.children["flaky"].restarts >= 3, timeout=60)
        supervisor.stopping = True  # what SIGINT does

    threading.Thread(target=stop_after_three_restarts, daemon=True).start()
    supervisor.run(poll=0.05)
    supervisor.stop_all()
    exits = [text for text in said if text.startswith("flaky (exit code 3)")]
    assert [re.search(r"restarting in ([\d.]+) s", t).group(1) for t in exits[:3]] == ["0.2", "0.4", "0.8"]
    assert "about to fail" in exits[0]
