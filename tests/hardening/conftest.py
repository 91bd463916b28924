"""Private, restartable copies of Redis and PostgreSQL for fault tests, so killing them does not
disturb the machine's shared services (or other tests)."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

import pytest

from tests.base import service_unavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port} after {timeout}s")


class PrivateRedis:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    if not shutil.which("redis-server"):
        service_unavailable("redis-server binary")
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


class PrivatePostgres:
    """initdb + pg_ctl as the `postgres` OS user (PostgreSQL refuses to run as root)."""

    def __init__(self):
        self.port = free_port()
        # Outside pytest's 0700 tmp tree: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="panel-pg-"))
        self.datadir = self.root / "pgdata"
        self.bindir = Path(sorted(glob("/usr/lib/postgresql/*/bin"))[-1])

    def _as_postgres(self, *args, check=True):
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/panel"

    def init(self):
        self.root.chmod(0o777)
        self._as_postgres("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "panel"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self):
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir}"
        self._as_postgres("pg_ctl", "-D", str(self.datadir), "-o", opts, "-w", "-l", str(self.datadir / "log"), "start")
        _wait_port(self.port)

    def stop(self):
        self._as_postgres("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop", check=False)


@pytest.fixture
def private_postgres():
    if not glob("/usr/lib/postgresql/*/bin/initdb"):
        service_unavailable("PostgreSQL server binaries")
    pg = PrivatePostgres()
    pg.init()
    yield pg
    pg.stop()
    shutil.rmtree(pg.root, ignore_errors=True)
