"""Heartbeats per second through the agent API under gunicorn on PostgreSQL, against a floor.

The floor is a trivial JSON endpoint (/livez) on the same server, measured in the same run with
the same clients: the ratio says how much of the server's raw request rate a heartbeat keeps.
Targets, for ordinary heartbeats and for a real server's 3,000 packages alike: >= 1,000 heartbeats/s
and >= 0.3x the trivial rate. The server page of a 3,000-package instance and its apps search are
timed too (target: median <= 150 ms, as the governance dashboard's).

1. Create (if needed) and migrate the database in DATABASE_URL
   (default postgres://postgres@127.0.0.1:5432/bench_heartbeat).
2. Start gunicorn (--workers, --worker-class gthread for keep-alive) with production-like settings.
3. Register --agents agents with a few apps each and --big-agents agents with --big-apps packages each
   (about 80 bytes a package, as dpkg reports them) through the real register endpoint; send each one
   first heartbeat.
4. For --seconds each, in --rounds alternating slices: the trivial endpoint, ordinary heartbeats and
   3,000-package heartbeats, from --clients processes with keep-alive connections (a lean HTTP/1.1
   client, so the load generator takes as little as it can of the CPUs it shares with the server).
   Heartbeats are realistic: the full state every time, mostly unchanged, a share (--change-rate)
   with one setting flipped.
5. Time the server page and its apps search for one 3,000-package instance, signed in as a viewer.

    .venv/bin/python bench/heartbeat.py [--agents 500 --big-agents 100 --big-apps 3000 --clients 2 --seconds 12]
"""

import argparse
import base64
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._load import combine, measure  # noqa: E402
from bench._report import report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE, TARGET_RATIO = 1000.0, 0.3
TARGET_PAGE_MS = 150.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_database(url: str) -> None:
    import psycopg

    u = urllib.parse.urlparse(url)
    name = u.path.lstrip("/")
    with psycopg.connect(
        host=u.hostname,
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def server_env(database_url: str, var_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="bench._settings",  # production settings; static files by name
        VAR_DIR=str(var_dir),
        DEBUG="false",
        SECRET_KEY="bench-" + secrets.token_hex(16),
        FERNET_KEYS=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),  # a Fernet key of its own
        SECURE_SSL_REDIRECT="false",
        SECURE_COOKIES="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        # Throttling stays on (its cost is part of a heartbeat), with limits the benchmark cannot hit.
        AGENT_THROTTLE="100000000/min",
        REGISTER_THROTTLE="100000/min",
        CONN_MAX_AGE="600",
    )
    return env


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None, headers: dict):
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            if request(conn, "GET", "/livez", None, {})[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer in time")


def make_state(rng: random.Random, packages: int = 0) -> dict:
    apps = [
        {"name": "monitoring-agent", "version": rng.choice(["2.3.1", "2.4.0"]), "running": True},
        {"name": "log-collector", "version": "1.9.2", "running": True},
        {"name": "nginx", "version": "1.26.2", "running": rng.random() > 0.1},
        {"name": "postgresql", "version": "16.4", "running": True},
        {"name": "outdated-db", "version": "1.4", "running": True},
    ]
    apps = apps[: rng.randint(2, 5)]
    if packages:  # a real server: dpkg's packages, sorted by name as an agent lists them
        apps = sorted(
            apps
            + [
                {"name": f"lib{n:04d}-{rng.choice(('common', 'dev', 'data'))}", "version": f"1.{n}.3-2ubuntu{n % 7}"}
                | {"running": False}
                for n in range(packages - len(apps))
            ],
            key=lambda a: a["name"],
        )
    return {
        "os_version": rng.choice(["24.04.1", "24.04.2"]),
        "apps": apps,
        "settings": {
            "ssh.password_auth": False,
            "ssh.root_login": False,
            "firewall.enabled": True,
            "auto_updates.enabled": rng.random() < 0.5,
            "ntp.enabled": True,
        },
        "updates": [
            {"kind": "os", "name": "os", "version": "24.04.3", "released_at": "2026-11-20T08:00:00+00:00"},
            {"kind": "app", "name": "monitoring-agent", "version": "2.4.0", "released_at": "2026-11-25T12:00:00+00:00"},
        ],
        "agent_version": "bench-1",
    }


def register_agents(port: int, token: str, count: int, packages: int = 0, prefix: str = "") -> list[dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    agents = []
    prefix = prefix or secrets.token_hex(3)
    for i in range(count):
        rng = random.Random(i)
        body = {"token": token, "name": f"bench-{prefix}-{i:05d}", "address": "127.0.0.1:9"}
        status, data = request(
            conn, "POST", "/api/agent/register", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        if status != 201:
            raise SystemExit(f"registration failed: HTTP {status} {data[:300]!r}")
        state = make_state(rng, packages)
        changed = json.loads(json.dumps(state))
        changed["settings"]["ssh.password_auth"] = True
        agents.append(
            {
                "auth": "Agent " + json.loads(data)["credential"],
                "instance_id": json.loads(data)["instance_id"],
                "bodies": [json.dumps(state).encode(), json.dumps(changed).encode()],
            }
        )
    for agent in agents:  # the first heartbeat stores the state; from here on most are unchanged
        status, data = request(
            conn,
            "POST",
            "/api/agent/heartbeat",
            agent["bodies"][0],
            {"Content-Type": "application/json", "Authorization": agent["auth"]},
        )
        if status != 200:
            raise SystemExit(f"first heartbeat refused: HTTP {status} {data[:300]!r}")
    conn.close()
    return agents


def time_pages(port: int, cookie: str, instance_id: int, count: int = 20) -> dict[str, float]:
    """Median milliseconds of the server page and of its apps search, one request at a time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": f"sessionid={cookie}"}
    pages = {
        "server page": f"/servers/{instance_id}/",
        "apps search": f"/servers/{instance_id}/apps/?q=lib1&page=2",
    }
    medians = {}
    for name, path in pages.items():
        timings = []
        for _ in range(count):
            t0 = time.perf_counter()
            status, _body = request(
                conn, "GET", path, None, {**headers, "HX-Request": "true"} if "apps" in path else headers
            )
            timings.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise SystemExit(f"{name}: HTTP {status}")
        medians[name] = sorted(timings)[len(timings) // 2]
    t0 = time.perf_counter()
    for _ in range(count):
        request(conn, "GET", "/livez", None, {})
    medians["trivial"] = (time.perf_counter() - t0) * 1000 / count
    conn.close()
    return medians


def manage(env: dict, code: str) -> str:
    """The last line `manage.py shell -c code` prints."""
    proc = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip().splitlines()[-1]


VIEWER_SESSION = (
    "from django.test import Client; from common.models import User; "
    "u, _ = User.objects.get_or_create(username='bench-viewer', defaults={'role': 'viewer'}); "
    "c = Client(); c.force_login(u); print(c.cookies['sessionid'].value)"
)


def start_server(args, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(args.workers)]
    gunicorn += ["-k", args.worker_class, "--keep-alive", "30", "--log-level", "warning"]
    if args.worker_class == "gthread":
        gunicorn += ["--threads", str(args.threads)]
    return subprocess.Popen(gunicorn, cwd=ROOT, env=env, start_new_session=True), port


def run(args, env: dict, token: str, cookie: str) -> dict:
    """Every measurement against one gunicorn: the three request kinds in alternating slices, then pages."""
    server, port = start_server(args, env)
    try:
        wait_up(port, server)
        small = register_agents(port, token, args.agents)
        big = register_agents(port, token, args.big_agents, args.big_apps)
        kinds = {
            "trivial": ("trivial", [small[n :: args.clients] for n in range(args.clients)], 0),
            "ordinary": ("heartbeat", [small[n :: args.clients] for n in range(args.clients)], args.change_rate),
            "big": ("heartbeat", [big[n :: args.clients] for n in range(args.clients)], args.change_rate),
            "big_conditional": ("conditional", [big[n :: args.clients] for n in range(args.clients)], args.change_rate),
        }
        for _kind, agents, _rate in list(kinds.values())[1:]:  # warm up every worker and connection
            measure(port, "heartbeat", agents, 2, 0, args.connections)
        # Alternate short slices of each, so a change in machine load during the run hits all alike.
        slices = {name: [] for name in kinds}
        for _ in range(args.rounds):
            for name, (kind, agents, rate) in kinds.items():
                slices[name].append(measure(port, kind, agents, args.seconds / args.rounds, rate, args.connections))
        results = {name: combine(parts) for name, parts in slices.items()}
        results["pages"] = time_pages(port, cookie, big[0]["instance_id"])
        results["body_bytes"] = len(big[0]["bodies"][0])
        return results
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def print_rate(label: str, m: dict) -> None:
    print(
        f"{label:<26}{m['rate']:8.0f} req/s   p50 {m['p50']:.1f} ms  p99 {m['p99']:.1f} ms  errors {m['errors']}"
        f"  ({m['changed']} of {m['total']} changed)"
    )


def report_rates(label: str, beats: dict, trivial: dict) -> bool:
    ratio = beats["rate"] / trivial["rate"] if trivial["rate"] else 0.0
    ok = beats["rate"] >= TARGET_RATE and ratio >= TARGET_RATIO
    verdict = "OK" if ok else "BELOW TARGET"
    print(f"  {label}: {ratio:.2f}x trivial (target >= {TARGET_RATIO}x), >= {TARGET_RATE:.0f}/s: {verdict}")
    report(
        label,
        beats["rate"],
        "/s",
        f">= {TARGET_RATE:.0f}/s",
        beats["rate"] >= TARGET_RATE,
        ratio,
        f">= {TARGET_RATIO}x trivial",
    )
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=500, help="agents with a few apps each")
    parser.add_argument("--big-agents", type=int, default=100, help="agents reporting --big-apps packages")
    parser.add_argument("--big-apps", type=int, default=3000, help="packages per big agent (a real server)")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections per client process")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured time per request kind")
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices of each request kind")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--worker-class", default="gthread", help="gthread (keep-alive) or sync")
    parser.add_argument("--change-rate", type=float, default=0.02, help="share of heartbeats with a changed state")
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_heartbeat")
    if not database_url.startswith("postgres"):
        raise SystemExit("This benchmark runs on PostgreSQL: set DATABASE_URL=postgres://...")
    # A private VAR_DIR: the filesystem broker's queue (tasks enqueued by changed heartbeats) goes with it.
    own_var = "VAR_DIR" not in os.environ
    var_dir = Path(tempfile.mkdtemp(prefix="bench-heartbeat-") if own_var else os.environ["VAR_DIR"])
    var_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    env = server_env(database_url, var_dir)
    ensure_database(database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    token = manage(
        env, "from fleet.services import registration_token_create as c; print(c(actor='bench', name='bench')[1])"
    )
    try:
        results = run(args, env, token, manage(env, VIEWER_SESSION))
    finally:
        if own_var:
            shutil.rmtree(var_dir, ignore_errors=True)

    trivial, pages = results["trivial"], results["pages"]
    print(
        f"server: gunicorn {args.worker_class} x{args.workers}"
        + (f" ({args.threads} threads)" if args.worker_class == "gthread" else "")
        + f", PostgreSQL; {os.cpu_count()} CPUs shared with {args.clients} client processes x {args.connections} connections"
    )
    print(f"machine load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(
        f"agents: {args.agents} ordinary, {args.big_agents} with {args.big_apps:,} packages ({results['body_bytes']:,} bytes a body)"
    )
    print_rate("trivial JSON (/livez):", trivial)
    print_rate("heartbeats:", results["ordinary"])
    print_rate(f"heartbeats, {args.big_apps:,} apps:", results["big"])
    print_rate("  conditional (If-Match):", results["big_conditional"])
    ok = report_rates("heartbeats through the agent endpoint", results["ordinary"], trivial)
    ok &= report_rates(f"heartbeats of {args.big_apps:,}-package servers, full bodies", results["big"], trivial)
    ok &= report_rates(
        f"heartbeats of {args.big_apps:,}-package servers, as the agent sends them (If-Match)",
        results["big_conditional"],
        trivial,
    )
    for name in ("server page", "apps search"):
        ms = pages[name]
        print(f"{name} ({args.big_apps:,} apps), median: {ms:.1f} ms (target <= {TARGET_PAGE_MS:.0f} ms)")
        report(
            f"{name} of a {args.big_apps:,}-package server",
            ms,
            "ms",
            f"<= {TARGET_PAGE_MS:.0f} ms",
            ms <= TARGET_PAGE_MS,
            ms / pages["trivial"],
            "x one /livez",
        )
    if any(results[k]["errors"] for k in ("trivial", "ordinary", "big", "big_conditional")):
        raise SystemExit("errors during the run: see above")


if __name__ == "__main__":
    main()
