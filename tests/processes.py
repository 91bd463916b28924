"""Helpers for tests and scripts that start the panel as real processes (gunicorn, the fuzzer).
Plain Python, no Django: tests/hardening/fuzz.py imports it as a script."""

import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(workdir: Path, suffix: str) -> str:
    """A new, empty database for a server process: `<DATABASE_URL's name>_<suffix>` on PostgreSQL
    (dropped and made again), else a SQLite file in `workdir`."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return f"sqlite:///{workdir / f'{suffix}.sqlite3'}"
    import psycopg

    parts = urlparse(url)
    name = (parts.path.lstrip("/") or "governance") + f"_{suffix}"
    with psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return parts._replace(path=f"/{name}").geturl()


def stop_group(proc: subprocess.Popen | None, *, grace: float = 20) -> None:
    """SIGTERM a process started with start_new_session=True and its children, SIGKILL after `grace` s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
