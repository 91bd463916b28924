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


def install_license(plan: str = "enterprise") -> None:
    """A license of `plan`, signed by a throwaway issuer whose key the panel is told to trust."""
    import os

    from django.conf import settings

    from fleet.licensing import verify_license
    from fleet.models import License
    from tests.base import LicenseIssuer

    issuer = LicenseIssuer()
    settings.LICENSE_PUBLIC_KEY = os.environ["LICENSE_PUBLIC_KEY"] = issuer.public_key
    text = issuer.issue(plan)
    info = verify_license(text, issuer.public_key)
    License.objects.create(text=text, plan=plan, customer=info.customer, expires_at=info.expires_at)
