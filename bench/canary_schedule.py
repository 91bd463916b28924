"""Canary scheduling through the real worker, and one full service round over 10,000 instances, on PostgreSQL.

    .venv/bin/python bench/canary_schedule.py   (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_canary;
                                                  CELERY_BROKER_URL: a Redis database of your own)

Creates and migrates its own database, serves healthy loopback health endpoints from a child process
(bench/canary_poll.py's server), starts a real Celery worker (threads pool) and beat, and prints:

1. scheduling jitter: p99 of (round start − due time) over every round while 20 deployments run, each
   polling 5 instances every 1 s (target <= 0.5 s); its ratio to the same p99 with one deployment
   running alone, measured first in the same run (what the task queue and the worker cost by themselves);
2. one service round over 10,000 instances, 10 % of them hanging, 1 s timeout: probes, judging every
   instance and recording every poll (`canary.services.canary_advance`, in this process; target <= 5 s);
   ratio to the probes alone (canary.probes.poll_many over the same endpoints, same run).
"""

import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_canary")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("VAR_DIR", "/tmp/bench-canary-var")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DEBUG", "true")  # loopback health endpoints allowed, as in development
os.environ["CANARY_PROBE_TIMEOUT"] = "1"
os.environ["CANARY_RECHECK_SECONDS"] = "1"

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from fleet.licensing import public_key_text, sign_license  # noqa: E402

_KEY = Ed25519PrivateKey.generate()
os.environ["LICENSE_PUBLIC_KEY"] = public_key_text(_KEY)

from canary_poll import endpoints, raise_fd_limit  # noqa: E402
from evaluation import ensure_database  # noqa: E402

ensure_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from _report import report  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from canary import services  # noqa: E402
from canary.models import CanaryDeployment, EvaluationRound  # noqa: E402
from canary.probes import Target, poll_many  # noqa: E402
from common.net import resolve_outbound  # noqa: E402
from fleet.choices import InstanceStatus, RunStatus, ScopeKind  # noqa: E402
from fleet.models import CommandRun, Instance, License  # noqa: E402
from fleet.scopes import Scope  # noqa: E402

DEPLOYMENTS, PER_DEPLOYMENT = 20, 5
ALONE_SECONDS, BUSY_SECONDS = 10, 25
BIG, BIG_HANG = 10_000, 0.10


def fresh_database():
    call_command("migrate", verbosity=0)
    CanaryDeployment.objects.all().delete()
    Instance.objects.all().delete()
    License.objects.all().delete()
    now = timezone.now()
    payload = {
        "plan": "enterprise",
        "customer": "bench",
        "issued_at": (now - timedelta(days=1)).isoformat(),
        "expires_at": (now + timedelta(days=30)).isoformat(),
        "license_id": "bench",
        "limits": {},
    }
    License.objects.create(
        text=sign_license(_KEY, payload), plan="enterprise", customer="bench", expires_at=now + timedelta(days=30)
    )


def make_instances(prefix, ports, app):
    now = timezone.now()
    Instance.objects.bulk_create(
        [
            Instance(
                name=f"{prefix}-{n:05d}",
                address=f"127.0.0.1:{port}",
                status=InstanceStatus.ONLINE,
                last_seen_at=now,
                apps=[{"name": app, "version": "1.0", "running": True}],
            )
            for n, port in enumerate(ports)
        ],
        batch_size=2000,
    )
    return list(Instance.objects.filter(name__startswith=f"{prefix}-").order_by("name"))


def deploy(instances, app, *, interval=1, consecutive=100, max_duration=600):
    deployment = services.canary_create(
        actor=None,
        kind="update_app",
        params={"app": app, "version": "2.0"},
        scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=tuple(i.pk for i in instances)),
        percentage=100,
        criteria=["online", "health_check"],
        check_interval=interval,
        max_duration=max_duration,
        consecutive_healthy=consecutive,  # never reached during the bench: the deployment keeps polling
    )
    # The agents' part: every run of the change completed.
    CommandRun.objects.filter(command=deployment.canary_command).update(
        status=RunStatus.COMPLETED, finished_at=timezone.now()
    )
    CanaryDeployment.objects.filter(pk=deployment.pk).update(next_poll_at=timezone.now())
    services.scheduling.enqueue(deployment.pk, timezone.now())
    return deployment


def celery(*args):
    env = dict(os.environ)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def lateness(since, until, deployment_ids) -> list[float]:
    rounds = EvaluationRound.objects.filter(
        deployment_id__in=deployment_ids, purpose="evaluation", due_at__gte=since, due_at__lt=until
    ).values_list("started_at", "due_at")
    return [(started - due).total_seconds() for started, due in rounds]


def p99(values) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def jitter() -> bool:
    child, ports, _ = endpoints(DEPLOYMENTS * PER_DEPLOYMENT, 0.0)
    worker = celery("worker", "-l", "warning", "-P", "threads", "-c", "4", "--without-gossip", "--without-mingle")
    beat = celery("beat", "-l", "warning", "-s", "/tmp/bench-canary-var/beat-schedule")
    try:
        time.sleep(4)  # the worker connects
        groups = [ports[i * PER_DEPLOYMENT : (i + 1) * PER_DEPLOYMENT] for i in range(DEPLOYMENTS)]
        alone = deploy(make_instances("alone", groups[0], "app-00"), "app-00")
        start = timezone.now()
        time.sleep(ALONE_SECONDS)
        alone_late = lateness(start + timedelta(seconds=1), timezone.now(), [alone.pk])
        busy = [alone] + [
            deploy(make_instances(f"busy{n:02d}", groups[n], f"app-{n:02d}"), f"app-{n:02d}")
            for n in range(1, DEPLOYMENTS)
        ]
        start = timezone.now()
        time.sleep(BUSY_SECONDS)
        busy_late = lateness(start + timedelta(seconds=2), timezone.now(), [d.pk for d in busy])
        CanaryDeployment.objects.filter(pk__in=[d.pk for d in busy]).update(phase="rolled_back", next_poll_at=None)
    finally:
        for proc in (worker, beat):
            os.killpg(proc.pid, 15)
        for proc in (worker, beat):
            proc.wait(timeout=30)
        child.stdin.close()
        child.wait(timeout=30)
    a, b = p99(alone_late), p99(busy_late)
    expected = DEPLOYMENTS * (BUSY_SECONDS - 2)
    print(f"-- scheduling jitter (round start − due time), interval 1 s, {PER_DEPLOYMENT} instances each")
    print(
        f"   1 deployment alone:  {len(alone_late)} rounds, p50 {statistics.median(alone_late) * 1000:.0f} ms, p99 {a * 1000:.0f} ms"
    )
    print(
        f"   {DEPLOYMENTS} deployments:       {len(busy_late)} rounds (of ~{expected} due), "
        f"p50 {statistics.median(busy_late) * 1000:.0f} ms, p99 {b * 1000:.0f} ms, max {max(busy_late) * 1000:.0f} ms"
    )
    ok = b <= 0.5 and len(busy_late) >= 0.9 * expected
    report(
        "canary round start jitter p99: 20 deployments",
        round(b, 3),
        "s",
        "<= 0.5 s",
        ok,
        ratio=round(b / a, 2) if a > 0 else None,
        ratio_target="vs 1 deployment alone",
    )
    return ok


def big_round() -> bool:
    hanging = int(BIG * BIG_HANG)
    child, ports, _ = endpoints(BIG + hanging, hanging / (BIG + hanging))
    try:
        hang_ports, ok_ports = ports[:hanging], ports[hanging:]
        instances = make_instances("big", ok_ports, "big-app")
        deployment = deploy(instances, "big-app", interval=10, consecutive=3, max_duration=600)
        # 10 % of them hang from now on (after a healthy pre-flight): point them at the silent ports.
        for inst, port in zip(instances[::10], hang_ports, strict=False):
            Instance.objects.filter(pk=inst.pk).update(address=f"127.0.0.1:{port}")
        services.canary_advance(deployment_id=deployment.pk)  # every run finished: evaluation starts
        started = time.monotonic()
        services.canary_advance(deployment_id=deployment.pk)  # the round
        full = time.monotonic() - started
        round_row = EvaluationRound.objects.get(deployment=deployment, number=1)
        targets = [
            Target("127.0.0.1", int(i.address.rsplit(":", 1)[1]), "/health")
            for i in Instance.objects.filter(name__startswith="big-")
        ]
        started = time.monotonic()
        results = poll_many(targets, timeout=1.0, resolve=resolve_outbound)
        probes_only = time.monotonic() - started
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    misjudged = round_row.total - hanging - round_row.healthy
    print(f"-- one service round over {BIG} instances ({hanging} hang), 1 s timeout")
    print(
        f"   probe + judge + record: {full:.3f} s   (round row: {round_row.healthy} healthy of {round_row.total}, misjudged {misjudged})"
    )
    print(f"   probes alone:           {probes_only:.3f} s   ({sum(r.healthy for r in results)} healthy)")
    ok = full <= 5.0 and misjudged == 0
    report(
        "canary service round: 10000 instances, 10 % hang",
        round(full, 3),
        "s",
        "<= 5 s",
        ok,
        ratio=round(full / probes_only, 2),
        ratio_target="vs probes alone",
    )
    return ok


def main() -> int:
    raise_fd_limit()
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        print("CELERY_BROKER_URL must name a Redis database of your own")
        return 2
    fresh_database()
    results = [jitter(), big_round()]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
