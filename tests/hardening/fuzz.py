"""`make fuzz`: schemathesis against a live panel, as strict as an outsider would be.

Every operation of the OpenAPI schema, all phases (examples, coverage, fuzzing, stateful), every
check, NUL bytes allowed, `--examples` cases per operation, once for each credential an outsider can
hold: an admin's and a viewer's API token, an agent's credential, and none. The panel runs under
gunicorn on a database of its own (PostgreSQL when DATABASE_URL names one, else SQLite), seeded through
its own API so the fuzzer finds real objects (instances, groups, a policy, a waiver, a canary, desired
configuration). Each credential gets a panel of its own (database, server, seed): the admin's run
demotes, deactivates and deletes what it finds, and the next credential must not inherit that (a shared
panel left the viewer's token and the agent's instance dead, so their runs read 401 throughout). The
admin's token belongs to a plain admin, not the bootstrap superuser, so the panel's own rule (no admin
demotes or deactivates themselves) keeps it an admin for the whole run. Prints one table with the
operations, test cases and wall time of each run and exits 1 if any server error or schema violation was
found.

    python tests/hardening/fuzz.py [--examples 100] [--credentials admin,viewer,agent,anonymous]
                                   [--include 'remediation|policies/(export|import)']

`--include` is a regular expression on the path: fuzz only the operations it matches (new surface first).

Server errors and schema violations are the bar (every "Internal Server Error" the server logged,
`not_a_server_error`, `response_schema_conformance`,
`status_code_conformance`, `content_type_conformance`, `response_headers_conformance`); the other checks
(`positive_data_acceptance`, `negative_data_rejection`, …) are reported beside them: schema-valid input
can still be refused by business rules (an unknown id, a name taken).
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.processes import free_port, fresh_database  # noqa: E402

PY = sys.executable
BAR = {
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
}


def manage(env, *args) -> str:
    out = subprocess.run([PY, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout.strip()


class Api:
    def __init__(self, base: str, authorization: str):
        self.base, self.authorization = base, authorization

    def call(self, method: str, path: str, body=None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", self.authorization)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"seeding {method} {path} failed: {exc.code} {exc.read()[:500]!r}") from None
        return json.loads(text) if text else {}


def seed(env, base: str, var: Path) -> dict[str, str]:
    """Real objects for the fuzzer to find, created through the API. Returns credential → header."""
    bootstrap = Api(base, f"Bearer {manage(env, 'create_api_token', 'admin').splitlines()[-1]}")
    for username, role in (("fuzz-admin", "admin"), ("fuzz-viewer", "viewer")):
        bootstrap.call("POST", "/api/users", {"username": username, "role": role, "password": "long-enough-pw-42"})
    admin_key = manage(env, "create_api_token", "fuzz-admin").splitlines()[-1]
    admin = Api(base, f"Bearer {admin_key}")
    viewer_key = manage(env, "create_api_token", "fuzz-viewer").splitlines()[-1]
    token = (var / "sim-token.txt").read_text().strip()
    agent = Api(base, "")
    registered = agent.call(
        "POST", "/api/agent/register", {"token": token, "name": "fuzz-01", "address": "127.0.0.1:9"}
    )
    agent.authorization = f"Agent {registered['credential']}"
    state = {
        "os_version": "24.04",
        "apps": [{"name": "nginx", "version": "1.24.0", "running": True}],
        "settings": {"ssh.password_auth": False},
        "updates": [{"kind": "app", "name": "nginx", "version": "1.26.0", "released_at": "2026-01-01T00:00:00Z"}],
        "agent_version": "fuzz",
    }
    agent.call("POST", "/api/agent/heartbeat", state)
    policy = admin.call(
        "POST",
        "/api/governance/policies",
        {
            "name": "fuzz-required",
            "policy_type": "required_apps",
            "rules": {"apps": [{"name": "nginx"}]},
            "scope": {"kind": "all"},
        },
    )
    admin.call(
        "POST",
        "/api/governance/exceptions",
        {
            "policy": policy["id"],
            "scope": {"kind": "instances", "instances": [registered["instance_id"]]},
            "justification": "fuzzing needs a waiver to look at",
            "expires_at": "2099-01-01T00:00:00Z",
        },
    )
    admin.call("POST", "/api/governance/gitops/desired-config", {"level": "fleet", "key": "fuzz.key", "value": "1"})
    return {
        "admin": f"Bearer {admin_key}",
        "viewer": f"Bearer {viewer_key}",
        "agent": agent.authorization,
        "anonymous": "",
    }


def wait_up(base: str, proc, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not come up")


def fetch_schema(base: str, admin_header: str, path: Path) -> None:
    """The schema needs a signed-in user: fetched once as admin, then fuzzed with each credential."""
    request = urllib.request.Request(base + "/api/schema/?format=json", headers={"Authorization": admin_header})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
        path.write_bytes(response.read())


def run_schemathesis(base: str, header: str, schema: Path, examples: int, report: Path, include: str = "") -> int:
    cmd = [
        str(Path(PY).with_name("schemathesis")),
        "run",
        str(schema),
        "--url",
        base,
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--generation-allow-x00",
        "true",
        "--max-examples",
        str(examples),
        "--generation-deterministic",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--no-color",
    ]
    if header:
        cmd += ["--header", f"Authorization: {header}"]
    if include:
        cmd += ["--include-path-regex", include]
    return subprocess.run(cmd, cwd=ROOT).returncode


def failures(report: Path) -> tuple[Counter, dict]:
    """Failed checks by name, and one example (operation and message) of each, from the NDJSON events."""
    counts: Counter = Counter()
    examples: dict[str, str] = {}
    if not report.exists():
        return counts, examples
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished") if line.strip() else None
        if not finished:
            continue
        for checks in finished["recorder"].get("checks", {}).values():
            for check in checks:
                if check["status"] == "failure":
                    counts[check["name"]] += 1
                    failure = check.get("failure_info", {}).get("failure", {})
                    examples.setdefault(
                        check["name"], f"{failure.get('operation')}: {failure.get('message', '')[:300]}"
                    )
    return counts, examples


def start_panel(workdir: Path, name: str):
    """A fresh database, migrated and bootstrapped, and gunicorn on it in production mode: (base, env, server)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        DATABASE_URL=fresh_database(workdir, f"fuzz_{name}"),
        VAR_DIR=str(workdir / "var"),
        STATIC_ROOT=str(workdir / "static"),
        CELERY_TASK_ALWAYS_EAGER="true",
        # Production mode: DEBUG pages answer HTML where the API promises JSON.
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        FERNET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        SECURE_COOKIES="false",
        REGISTER_THROTTLE="100000/min",
        AGENT_THROTTLE="100000/min",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    manage(env, "migrate", "--noinput")
    # Production pages need the manifest: without it every HTML answer, a 404 too, was a 500.
    manage(env, "collectstatic", "--noinput")
    manage(env, "bootstrap_demo")  # before the server starts: it reads the license key pair made here
    log = workdir / "server.log"
    gunicorn = [PY, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "-k", "gthread"]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*gunicorn, "--threads", "4"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    wait_up(base, server, log)
    return base, env, server


def operations(report: Path) -> tuple[int, int]:
    """(operations tested, test cases run) from the NDJSON report's scenarios."""
    ops, cases = set(), 0
    for line in report.read_text().splitlines() if report.exists() else []:
        finished = json.loads(line).get("ScenarioFinished") if line.strip() else None
        if finished:
            cases += len(finished["recorder"].get("cases", {}))
            if finished["phase"] != "stateful":  # its scenarios are labelled by link chains, not operations
                ops.add(finished["recorder"]["label"])
    return len(ops), cases


def fuzz_one(name: str, workdir: Path, args) -> tuple:
    """One credential's run on a panel of its own: (name, bar failures, server errors, other, ops, cases, s)."""
    workdir.mkdir()
    started = time.monotonic()
    base, env, server = start_panel(workdir, name)
    try:
        credentials = seed(env, base, workdir / "var")
        schema = workdir / "schema.json"
        fetch_schema(base, credentials["admin"], schema)
        report = workdir / f"{name}.ndjson"
        run_schemathesis(base, credentials[name], schema, args.examples, report, args.include)
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(workdir / "var", ignore_errors=True)
        shutil.rmtree(workdir / "static", ignore_errors=True)
    counts, examples = failures(report)
    for check, example in examples.items():
        if check in BAR:
            print(f"[{name}] {check}: {example}")
    bar = sum(n for check, n in counts.items() if check in BAR)
    other = {check: n for check, n in counts.items() if check not in BAR}
    ops, cases = operations(report)
    # The server's own count: schemathesis's capability probes (a path with control characters) are no
    # test case, so a 500 they draw shows only here.
    logged = (workdir / "server.log").read_text(errors="replace").count("Internal Server Error")
    bar += logged
    server_errors = max(counts.get("not_a_server_error", 0), logged)
    return name, bar, server_errors, other, ops, cases, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--credentials", default="admin,viewer,agent,anonymous")
    parser.add_argument("--include", default="", help="regular expression: fuzz only the paths it matches")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-"))
    rows = [fuzz_one(name, workdir / name, args) for name in args.credentials.split(",")]
    print(f"\n{args.examples} examples per operation")
    print("credential  operations  test cases  server errors  bar failures  wall time  other checks")
    for name, bar, server_errors, other, ops, cases, seconds in rows:
        print(
            f"{name:<11} {ops:>10}  {cases:>10}  {server_errors:>13}  {bar:>12}  {seconds:>7.0f} s"
            f"  {dict(other) or '-'}"
        )
    print(f"\nReports and the server logs: {workdir}")
    return 1 if any(row[1] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
