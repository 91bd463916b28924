"""Shared by the benchmarks: one machine-readable line per figure, collected by `make bench`."""

import json
import time


def report(
    name: str, figure: float, unit: str, target: str, ok: bool, ratio: float | None = None, ratio_target: str = ""
):
    print(
        "BENCH "
        + json.dumps(
            {
                "name": name,
                "figure": figure,
                "unit": unit,
                "target": target,
                "ratio": ratio,
                "ratio_target": ratio_target,
                "ok": ok,
            }
        ),
        flush=True,
    )


def fresh_database(url: str) -> None:
    """Drop and create the PostgreSQL database `url` names (a benchmark starts from an empty one)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def timed(fn):
    """(seconds fn() took, its result)."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result
