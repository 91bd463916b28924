"""Benchmark: policy evaluation and the governance dashboard at fleet scale, on PostgreSQL.

    .venv/bin/python bench/evaluation.py   (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_evaluation)

Creates and migrates its own database, builds BENCH_INSTANCES (10,000) instances and 50 policies,
and prints:
1. full evaluation of the fleet × 50 (cold: every violation is new), run in a fresh process of its
   own so that its peak RSS is the evaluation's, and the ratio to PostgreSQL bulk-writing (COPY) the
   same violation rows in the same run (targets at 10,000: ≤ 5 s; at 100,000: ≤ 40 s and ≤ 1 GiB);
   each timed BENCH_REPEAT (3) times, interleaved, medians compared. BENCH_SWEEP_ONLY=1 stops here;
   BENCH_APPS=3000 gives every instance that many installed packages (a real Debian server's list)
   and adds the floor of reading every app index alone (10,000 × 3,000: about 2.1 GB of apps JSON
   and 0.8 GB of index, written by COPY in about a minute, 0.3 GB on disk compressed);
2. incremental evaluation of one instance after its state changed, median (target ≤ 5 ms);
3. governance dashboard render at 10,000 instances and 100,000 violations, median (target ≤ 150 ms).
"""

import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_evaluation"
os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("VAR_DIR", "/tmp/bench-evaluation-var")
os.environ.setdefault("LOG_LEVEL", "WARNING")

INSTANCES = int(os.environ.get("BENCH_INSTANCES", 10_000))
POLICIES = 50
REPEAT = int(os.environ.get("BENCH_REPEAT", 3))  # timings of the full evaluation and of its floor
APPS = int(os.environ.get("BENCH_APPS", 0))  # installed packages per instance (0: the 8 or so below)
SWEEP_ONLY = os.environ.get("BENCH_SWEEP_ONLY") == "1"
DASHBOARD_VIOLATIONS = 100_000


def ensure_database(url: str) -> None:
    """Create the benchmark database if it does not exist (connects to the server's `postgres` db)."""
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


ensure_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from common.models import User  # noqa: E402
from fleet.app_index import apps_text  # noqa: E402
from fleet.choices import InstanceStatus, ScopeKind  # noqa: E402
from fleet.models import Group, Instance, Tag  # noqa: E402
from fleet.state import validate_heartbeat  # noqa: E402
from governance import evaluators, services  # noqa: E402
from governance.models import InstanceCompliance, Policy, PolicyCompliance, ReleaseRecord, Violation  # noqa: E402

rng = random.Random(42)
APP_POOL = [f"app-{i:02d}" for i in range(30)] + ["monitoring-agent", "log-collector", "outdated-db", "insecure-tool"]


# A Debian 12 server's package names and version shapes (dpkg-query -W), repeated with numbered
# suffixes up to BENCH_APPS packages per instance.
DEBIAN_PACKAGES = [
    ("adduser", "3.134"),
    ("apt", "2.6.1"),
    ("base-files", "12.4+deb12u5"),
    ("bash", "5.2.15-2+b2"),
    ("coreutils", "9.1-1"),
    ("dpkg", "1.21.22"),
    ("e2fsprogs", "1.47.0-2"),
    ("gcc-12-base", "12.2.0-14"),
    ("libc6", "2.36-9+deb12u4"),
    ("libssl3", "3.0.11-1~deb12u2"),
    ("libsystemd0", "252.22-1~deb12u1"),
    ("openssh-server", "1:9.2p1-2+deb12u2"),
    ("openssl", "3.0.11-1~deb12u2"),
    ("perl-base", "5.36.0-7+deb12u1"),
    ("python3.11", "3.11.2-6"),
    ("systemd", "252.22-1~deb12u1"),
    ("tzdata", "2024a-0+deb12u1"),
    ("zlib1g", "1:1.2.13.dfsg-1"),
    ("libpam-modules", "1.5.2-6+deb12u1"),
    ("sudo", "1.9.13p3-1+deb12u1"),
]


def debian_packages(n: int) -> list[dict]:
    out = []
    for i in range(n):
        name, version = DEBIAN_PACKAGES[i % len(DEBIAN_PACKAGES)]
        out.append(
            {
                "name": f"{name}-{i // len(DEBIAN_PACKAGES)}" if i >= len(DEBIAN_PACKAGES) else name,
                "version": version,
                "running": False,
            }
        )
    return out


class PackageList:
    """debian_packages(n), validated once, merged into each instance's few apps as its apps JSON text
    and its app index, in name order, as validate_heartbeat and apps_text would write them (checked
    once against them): validating and serialising 3,000 packages per instance dominated the build."""

    def __init__(self, n: int):
        self.n, self.checked = n, False
        packages = debian_packages(n)
        self.items = [(a["name"], json.dumps(a), apps_text([a])[1:]) for a in packages]
        self._sorted: dict[int, list] = {}

    def merged(self, apps: list[dict]) -> tuple[str, str]:
        """(apps JSON, app index) of the validated `apps` and the first n - len(apps) packages."""
        k = self.n - len(apps)
        if k not in self._sorted:
            self._sorted[k] = sorted(self.items[:k])
        items = sorted([(a["name"], json.dumps(a), apps_text([a])[1:]) for a in apps] + self._sorted[k])
        apps_json, index = "[" + ", ".join(i[1] for i in items) + "]", "\n" + "".join(i[2] for i in items)
        if not self.checked:
            full = validate_heartbeat({"apps": apps + debian_packages(self.n)[:k]})[0]["apps"]
            assert json.loads(apps_json) == full and index == apps_text(full), "PackageList drifted"
            self.checked = True
        return apps_json, index


INSTANCE_COLUMNS = ("name", "os_version", "status", "last_seen_at", "registered_at", "apps", "settings", "updates")


def copy_instances(rows: list[tuple]) -> None:
    """COPY instances (INSTANCE_COLUMNS + apps_text, JSON as text); every other column its model default."""
    defaults = [f for f in Instance._meta.concrete_fields if f.column not in (*INSTANCE_COLUMNS, "id", "apps_text")]
    columns = [*INSTANCE_COLUMNS, "apps_text", *(f.column for f in defaults)]
    rest = tuple(f.get_default() for f in defaults)
    sql = f"COPY fleet_instance ({', '.join(columns)}) FROM STDIN"
    with transaction.atomic(), connection.cursor() as cur, cur.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row + rest)


def median_ms(fn, runs: int) -> float:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def build_fleet(now) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE governance_violation, governance_instancecompliance, governance_policycompliance, "
            "governance_releaserecord, governance_policyexception, governance_instancesnapshot, governance_compliancesnapshot, "
            "governance_policy, fleet_instance, fleet_group, fleet_tag RESTART IDENTITY CASCADE"
        )
    groups = Group.objects.bulk_create([Group(name=f"group-{i}") for i in range(10)])
    tags = Tag.objects.bulk_create(
        [Tag(key="env", value=v) for v in ("production", "staging", "dev")]
        + [Tag(key="role", value=v) for v in ("web", "db", "cache")]
    )
    packages = PackageList(APPS) if APPS else None
    rows = []
    for i in range(INSTANCES):
        if len(rows) == 500:  # written in parts: 10,000 instances of 3,000 packages are 2.1 GB of JSON
            copy_instances(rows)
            rows = []
        apps = [
            {"name": n, "version": f"{rng.randint(1, 3)}.{rng.randint(0, 12)}", "running": rng.random() > 0.05}
            for n in rng.sample(APP_POOL, 8)
        ]
        apps = [a for a in apps if a["name"] not in ("monitoring-agent", "log-collector", "insecure-tool")]
        if rng.random() < 0.95:
            apps.append({"name": "monitoring-agent", "version": "2.1", "running": True})
        apps.append({"name": "log-collector", "version": "1.2", "running": rng.random() > 0.03})
        if rng.random() < 0.02:
            apps.append({"name": "insecure-tool", "version": "0.9", "running": True})
        updates = []
        if rng.random() < 0.15:
            updates.append(
                {
                    "kind": "os",
                    "name": "os",
                    "version": "24.04.3",
                    "released_at": (now - timedelta(hours=rng.randint(1, 120))).isoformat(),
                }
            )
        apps = validate_heartbeat({"apps": apps})[0]["apps"]  # stored as a heartbeat stores them
        apps_json, index = packages.merged(apps) if packages else (json.dumps(apps), apps_text(apps))
        rows.append(
            (
                f"srv-{i:06d}",
                rng.choice(["24.04.1", "24.04.2"] * 9 + ["22.04"]),
                InstanceStatus.ONLINE,
                now,
                now,
                apps_json,
                json.dumps({"ssh.password_auth": rng.random() < 0.1, "firewall": "on"}),
                json.dumps(updates),
                index,
            )
        )
    copy_instances(rows)
    ids = list(Instance.objects.values_list("pk", flat=True))
    Instance.groups.through.objects.bulk_create(
        [Instance.groups.through(instance_id=pk, group_id=groups[pk % 10].pk) for pk in ids], batch_size=5000
    )
    Instance.tags.through.objects.bulk_create(
        [Instance.tags.through(instance_id=pk, tag_id=tags[pk % 3].pk) for pk in ids]
        + [Instance.tags.through(instance_id=pk, tag_id=tags[3 + pk % 3].pk) for pk in ids],
        batch_size=5000,
    )
    # 50 policies of all four types over all / group / tag scopes. Created with the ORM: the services
    # would enqueue a Celery evaluation per policy, and this run measures evaluation itself.
    kinds = [
        (
            "required_apps",
            lambda i: {
                "apps": [{"name": "monitoring-agent", "min_version": "2.0"}, {"name": "log-collector", "running": True}]
            },
        ),
        (
            "blocked_apps",
            lambda i: {"apps": [{"pattern": "outdated-db", "below_version": "2.0"}, {"pattern": "insecure-*"}]},
        ),
        (
            "update_rules",
            lambda i: {"os_deadline_hours": 24 + i, "apps": [{"name": APP_POOL[i % 30], "deadline_hours": 48}]},
        ),
        (
            "baseline",
            lambda i: {
                "os_version": "24.04",
                "os_match": "minimum",
                "settings": {"ssh.password_auth": False, "firewall": "on"},
            },
        ),
    ]
    for i in range(POLICIES):
        policy_type, rules = kinds[i % 4]
        policy = Policy.objects.create(
            name=f"policy-{i:02d}", policy_type=policy_type, rules=evaluators.validate_rules(policy_type, rules(i))
        )
        if i % 3 == 1:
            policy.scope_kind = ScopeKind.GROUPS
            policy.save()
            policy.scope_groups.set(groups[i % 10 : i % 10 + 5])
        elif i % 3 == 2:
            policy.scope_kind, policy.scope_tags = ScopeKind.TAGS, ["env=production"]
            policy.save()


def sweep_in_fresh_process(now) -> tuple[float, dict, float]:
    """The cold sweep in a process of its own, started as a worker is (Django set up, URLconf loaded),
    so that its peak RSS is the evaluation's and not the fleet builder's: → (seconds, result, MiB)."""
    cmd = [sys.executable, __file__, "--sweep", now.isoformat()]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["seconds"], data["result"], data["peak_mib"]


def _sweep_child(now_text: str) -> None:
    from datetime import datetime

    from config.celery import warm_up

    warm_up()
    start = time.perf_counter()
    result = services.evaluate_fleet(now=datetime.fromisoformat(now_text))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "result": result, "peak_mib": _peak_rss_mib()}))


def _peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that across
    exec from the forked parent, so it reported the fleet builder's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_apps_floor() -> tuple[float, float]:
    """Seconds to read every instance's app index (fleet.app_index) as the sweep does (streamed, 50 at a
    time), and to read and parse every apps JSON the same way: what a narrowed and a full read cost."""
    times = []
    for column in ("apps_text", "apps"):
        start = time.perf_counter()
        with transaction.atomic():
            for _ in Instance.objects.values_list(column).iterator(chunk_size=50):
                pass
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    print(f"PostgreSQL: {connection.settings_dict['NAME']} — migrating…", flush=True)
    call_command("migrate", verbosity=0)
    now = timezone.now()
    start = time.perf_counter()
    build_fleet(now)
    print(f"fleet built: {INSTANCES} instances, {POLICIES} policies ({time.perf_counter() - start:.1f} s)", flush=True)

    # 1. Full evaluation, cold: every violation is new. The process is warm the way a Celery worker is
    # (config.celery.warm_up runs at worker start), so module imports are not counted as evaluation.
    from config.celery import warm_up

    warm_up()
    # A single timing of a few seconds moves by a fifth with this shared machine's load, so each side is
    # timed REPEAT times, interleaved (sweep, floor, sweep, floor, ...), and the medians are compared.
    full_times, floor_times = [], []
    for _ in range(REPEAT):
        with connection.cursor() as cur:  # every violation new again (untimed)
            cur.execute(
                "TRUNCATE governance_violation, governance_instancecompliance, governance_policycompliance, "
                "governance_releaserecord CASCADE"
            )
        seconds, result, peak_mib = sweep_in_fresh_process(now)
        full_times.append(seconds)
        rows = Violation.objects.count()

        # Floor: a plain COPY of the same number of violation rows (prebuilt tuples), committed; then
        # removed (untimed).
        columns = ["policy_id", "policy_name", "instance_id", "rule_key", "rule", "evidence", "severity"]
        floor_rows = [
            (*v[:3], v[3] + "#floor", *v[4:], "open", now, now) for v in Violation.objects.values_list(*columns)
        ]
        start = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cur:
            cols = ", ".join([*columns, "status", "first_detected_at", "last_seen_at"])
            with cur.cursor.copy(f"COPY governance_violation ({cols}) FROM STDIN") as copy:
                for row in floor_rows:
                    copy.write_row(row)
        floor_times.append(time.perf_counter() - start)
        Violation.objects.filter(rule_key__endswith="#floor").delete()
        del floor_rows
    full_s, floor_s = statistics.median(full_times), statistics.median(floor_times)
    target_s = 5 if INSTANCES <= 10_000 else 40 * INSTANCES / 100_000  # issue #12: 10k ≤ 5 s, 100k ≤ 40 s
    sample = list(
        Violation.objects.values("policy_id", "policy_name", "instance_id", "rule_key", "rule", "evidence", "severity")
    )

    start = time.perf_counter()
    services.evaluate_fleet(now=now)
    steady_s = time.perf_counter() - start

    print()
    print(
        f"1. Full evaluation of {INSTANCES:,} instances x {POLICIES} policies ({result['opened']:,} violations opened, {rows:,} rows)"
    )
    print(
        f"   wall time (median of {REPEAT}):           {full_s:6.2f} s   (target <= {target_s:g} s; runs: "
        + ", ".join(f"{t:.2f}" for t in full_times)
        + ")"
    )
    print(
        f"   floor, bulk-write of {rows:,} rows: {floor_s:6.2f} s   (runs: "
        + ", ".join(f"{t:.2f}" for t in floor_times)
        + ")"
    )
    # #3 asked for <= 3x; #12 replaced its targets (5 s, 40 s and 1 GiB at 100,000), keeping the ratio printed.
    print(f"   ratio to floor:                    {full_s / floor_s:6.2f} x")
    print(f"   peak RSS of the evaluating process: {peak_mib:5.0f} MiB (target <= 1024 MiB at 100,000)")
    if APPS:
        print(f"   with {APPS:,} packages per instance: {INSTANCES / full_s:,.0f} instance evaluations/s")
        index_s, json_s = read_apps_floor()
        print(f"   floor, reading every app index alone:  {index_s:6.2f} s (ratio {full_s / index_s:.1f} x)")
        print(f"   reading and parsing every apps JSON:   {json_s:6.2f} s (what each evaluation paid before the index)")
    report(
        f"governance full evaluation {INSTANCES // 1000}k x 50" + (f", {APPS} apps" if APPS else ""),
        full_s,
        "s",
        f"<= {target_s:g} s",
        full_s <= target_s and peak_mib <= 1024,
        full_s / floor_s,
        "of a bulk write of its rows",
    )
    print(f"   re-evaluation, nothing changed:    {steady_s:6.2f} s")
    if SWEEP_ONLY:
        return

    # The benchmark's own scaffolding is not part of a worker that evaluates heartbeats: let it go, so
    # the garbage collector does not walk it during the measurement.
    gc.collect()

    # 2. Incremental evaluation after one heartbeat changed an instance's state. The tables were just
    # filled in bulk: settle the database as a running system would be by now (autovacuum has visited
    # the new rows and gathered statistics, the checkpoint has written them), so that neither runs
    # during the measurement (untimed).
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
        cur.execute("CHECKPOINT")
    ids = list(Instance.objects.values_list("pk", flat=True)[:200])

    def change_and_evaluate(i):
        # A heartbeat with a changed state: log-collector stopped (or started again). It is required to
        # run by 13 policies, so each change opens or resolves violations and moves 13 policies' counts.
        pk = ids[i % len(ids)]
        inst = Instance.objects.get(pk=pk)
        apps = [dict(a, running=not a["running"]) if a["name"] == "log-collector" else a for a in inst.apps]
        Instance.objects.filter(pk=pk).update(apps=apps, apps_text=apps_text(apps))
        start = time.perf_counter()
        services.evaluate_instance(instance_id=pk)
        timings.append((time.perf_counter() - start) * 1000)

    timings: list[float] = []
    # Warm-up, untimed: one evaluation of each of the 200 instances. A worker that evaluates heartbeats
    # has its statements compiled, and the pages it writes have had their first write after the last
    # checkpoint (which logs the whole page) long ago; measure that steady state.
    for i in range(len(ids)):
        change_and_evaluate(i)
    timings.clear()
    for i in range(201):
        change_and_evaluate(i)
    incremental_ms = statistics.median(timings)
    floor_inc = median_ms(lambda i: Instance.objects.filter(pk=ids[i % len(ids)]).update(agent_version="x"), 101)
    print()
    print("2. Incremental evaluation of one instance after a heartbeat changed its state")
    print(f"   median:                            {incremental_ms:6.2f} ms  (target <= 5 ms)")
    print(f"   floor, one single-row UPDATE:      {floor_inc:6.2f} ms")
    print(f"   ratio to floor:                    {incremental_ms / floor_inc:6.1f} x")
    report(
        "governance incremental evaluation (median)",
        incremental_ms,
        "ms",
        "<= 5 ms",
        incremental_ms <= 5,
        incremental_ms / floor_inc,
        "vs 1-row UPDATE",
    )

    # 3. Dashboard at 10,000 instances and 100,000 violations (topped up with resolved history).
    missing = DASHBOARD_VIOLATIONS - Violation.objects.count()
    if missing > 0:
        history = [
            Violation(
                policy_id=v["policy_id"],
                policy_name=v["policy_name"],
                instance_id=v["instance_id"],
                rule_key=v["rule_key"],
                rule=v["rule"],
                evidence=v["evidence"],
                severity=v["severity"],
                status="resolved",
                first_detected_at=now - timedelta(days=3),
                last_seen_at=now - timedelta(days=2),
                resolved_at=now - timedelta(days=2),
            )
            for v in (sample * (missing // max(len(sample), 1) + 1))[:missing]
        ]
        Violation.objects.bulk_create(history, batch_size=5000)
    services.compliance_snapshot_take()
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    admin = User.objects.filter(username="bench-admin").first() or User.objects.create_user(
        "bench-admin", role="admin", password="x"
    )
    client = Client()
    client.force_login(admin)
    client.get("/governance/")  # warm up templates
    dashboard_ms = median_ms(lambda i: client.get("/governance/"), 21)
    floor_dash = median_ms(lambda i: Violation.objects.filter(status="open").count(), 21)
    print()
    print(
        f"3. Governance dashboard at {Instance.objects.count():,} instances, {Violation.objects.count():,} violations"
    )
    print(f"   render median:                     {dashboard_ms:6.1f} ms  (target <= 150 ms)")
    print(f"   floor, one COUNT of open violations: {floor_dash:4.1f} ms")
    print(f"   ratio to floor:                    {dashboard_ms / floor_dash:6.1f} x")
    report(
        "governance dashboard render (median)",
        dashboard_ms,
        "ms",
        "<= 150 ms",
        dashboard_ms <= 150,
        dashboard_ms / floor_dash,
        "vs 1 COUNT",
    )
    print()
    print(
        f"counts: {InstanceCompliance.objects.count():,} standings, {PolicyCompliance.objects.count()} policy counts, "
        f"{ReleaseRecord.objects.count():,} release records"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sweep"]:
        _sweep_child(sys.argv[2])
    else:
        main()
