"""A panel in production mode for tests/platform/test_production.py: deploy/build.sh into a private
STATIC_ROOT, a fresh database (PostgreSQL when DATABASE_URL names one, else SQLite), gunicorn with
DEBUG=false and SECURE_SSL_REDIRECT on, seeded through its own API. Requests say they came through a
TLS proxy (X-Forwarded-Proto: https, honoured by SECURE_PROXY_SSL_HEADER)."""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from tests.processes import free_port, fresh_database, stop_group

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
HTTPS = {"X-Forwarded-Proto": "https"}


def production_env(workdir: Path, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_BROKER_URL")}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        FERNET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="true",
        PANEL_URL=f"https://127.0.0.1:{port}",
        TRUSTED_PROXIES="127.0.0.1/32",
        DATABASE_URL=fresh_database(workdir, "production"),
        VAR_DIR=str(workdir / "var"),
        STATIC_ROOT=str(workdir / "static"),
        CELERY_TASK_ALWAYS_EAGER="true",  # no worker: what the API enqueues runs in the request
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def run(env, *args) -> str:
    out = subprocess.run([*args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise AssertionError(f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout.strip()


def manage(env, *args) -> str:
    return run(env, PY, str(ROOT / "manage.py"), *args)


class Browser:
    """A requests session that behaves like a browser behind the TLS proxy: https scheme announced,
    the panel's Secure cookies sent back (the jar sends them over https only, and this is plain HTTP
    to the panel, as from the proxy), CSRF token and Referer sent with forms."""

    def __init__(self, base: str):
        self.base = base
        self.session = requests.Session()

    def _headers(self, extra=None) -> dict:
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        return {**HTTPS, **({"Cookie": cookies} if cookies else {}), **(extra or {})}

    def get(self, path: str, **kwargs):
        headers = self._headers(kwargs.pop("headers", None))
        return self.session.get(self.base + path, headers=headers, allow_redirects=False, timeout=30, **kwargs)

    def sign_in(self, username: str, password: str) -> None:
        self.get("/accounts/login/")
        token = self.session.cookies.get("csrftoken")
        response = self.session.post(
            self.base + "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers=self._headers({"Referer": self.base.replace("http://", "https://") + "/accounts/login/"}),
            allow_redirects=False,
            timeout=30,
        )
        reason = re.search(r"<pre>(.*?)</pre>", response.text, re.S)
        assert response.status_code == 302, (
            f"sign-in as {username}: {response.status_code} {reason and reason.group(1)}"
        )


class Api:
    def __init__(self, base: str, key: str):
        self.base, self.key = base, key

    def post(self, path: str, body: dict) -> dict:
        headers = {**HTTPS, "Authorization": self.key, "Content-Type": "application/json"}
        response = requests.post(self.base + path, data=json.dumps(body), headers=headers, timeout=60)
        assert response.status_code < 300, f"seeding POST {path}: {response.status_code} {response.text[:1000]}"
        return response.json() if response.content else {}


def seed(env, base: str, var: Path) -> dict:
    """One object at least of every kind a page shows (bootstrap_demo made the admin, groups, tags, a
    license and a registration token). Returns the personas' passwords."""
    admin = Api(base, "Bearer " + manage(env, "create_api_token", "admin").splitlines()[-1])
    viewer_password = secrets.token_urlsafe(16)
    admin.post("/api/users", {"username": "vera", "role": "viewer", "password": viewer_password})
    token = (var / "sim-token.txt").read_text().strip()
    instances = []
    for name in ("web-01", "web-02", "db-01"):
        registered = Api(base, "").post("/api/agent/register", {"token": token, "name": name, "address": "127.0.0.1:9"})
        agent = Api(base, f"Agent {registered['credential']}")
        agent.post(
            "/api/agent/heartbeat",
            {
                "os_version": "24.04",
                "apps": [{"name": "nginx", "version": "1.24.0", "running": True}],
                "settings": {"ssh.password_auth": True},
                "updates": [
                    {"kind": "app", "name": "nginx", "version": "1.26.0", "released_at": "2026-01-01T00:00:00Z"}
                ],
                "agent_version": "production-test",
            },
        )
        instances.append(registered["instance_id"])
    policy = admin.post(
        "/api/governance/policies",
        {
            "name": "monitoring everywhere",
            "policy_type": "required_apps",
            "rules": {"apps": [{"name": "monitoring-agent"}]},
            "scope": {"kind": "all"},
        },
    )
    admin.post(
        "/api/governance/exceptions",
        {
            "policy": policy["id"],
            "scope": {"kind": "instances", "instances": instances[:1]},
            "justification": "decommissioned next week",
            "expires_at": "2099-01-01T00:00:00Z",
        },
    )
    admin.post("/api/fleet/commands", {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "all"}})
    admin.post(
        "/api/fleet/canary",
        {
            "name": "nginx 1.26",
            "change": {"kind": "update_app", "params": {"app": "nginx", "version": "1.26.0"}},
            "scope": {"kind": "all"},
            "canary": {"percentage": 34},
            "criteria": ["online"],
            "success_threshold": 100,
            "check_interval": 5,
            "max_duration": 60,
        },
    )
    admin.post(
        "/api/governance/gitops",
        {"name": "fleet-config", "url": "ssh://git@127.0.0.1:1/fleet-config.git", "branch": "main"},
    )
    admin.post("/api/governance/gitops/desired-config", {"level": "fleet", "key": "ntp.server", "value": "pool"})
    return {"admin": (var / "admin-password.txt").read_text().strip(), "vera": viewer_password}


class ProductionPanel:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = production_env(workdir, self.port)
        self.log = workdir / "gunicorn.log"
        self.proc = None

    def start(self) -> "ProductionPanel":
        run(dict(self.env, PYTHON=PY), "sh", str(ROOT / "deploy" / "build.sh"))
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "bootstrap_demo")  # before the server: it reads the license key pair made here
        manage(self.env, "seed_demo_policies")
        gunicorn = [PY, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "2"]
        gunicorn += ["-k", "gthread", "--threads", "4"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                gunicorn, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_up()
        self.passwords = seed(self.env, self.base, Path(self.env["VAR_DIR"]))
        return self

    def _wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(self.base + "/healthz", timeout=15).status_code < 500:
                    return
            except requests.RequestException:  # not listening yet, or a worker still loading the app
                pass
            time.sleep(0.3)
        raise AssertionError(f"gunicorn did not answer within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_group(self.proc)

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")
