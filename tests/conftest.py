import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from common.choices import Role
from common.models import User
from fleet.models import License
from tests.base import LicenseIssuer, api_key_for, port_open, service_unavailable
from tests.processes import stop_group

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SECURE_SSL_REDIRECT = False


def _user(username, role, **extra):
    return User.objects.create_user(
        username=username, password="pw-" + username, role=role, email=f"{username}@example.com", **extra
    )


# Personas: admin, operator, viewer, outsider (inactive account).
@pytest.fixture
def admin_user(db):
    return _user("alice", Role.ADMIN)


@pytest.fixture
def operator_user(db):
    return _user("oscar", Role.OPERATOR)


@pytest.fixture
def viewer_user(db):
    return _user("victor", Role.VIEWER)


@pytest.fixture
def outsider_user(db):
    return _user("eve", Role.VIEWER, is_active=False)


def _api_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(user)}")
    return client


@pytest.fixture
def admin_api(admin_user):
    return _api_client(admin_user)


@pytest.fixture
def operator_api(operator_user):
    return _api_client(operator_user)


@pytest.fixture
def viewer_api(viewer_user):
    return _api_client(viewer_user)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def operator_client(client, operator_user):
    client.force_login(operator_user)
    return client


@pytest.fixture
def viewer_client(client, viewer_user):
    client.force_login(viewer_user)
    return client


@pytest.fixture
def license_issuer(settings):
    issuer = LicenseIssuer()
    settings.LICENSE_PUBLIC_KEY = issuer.public_key
    return issuer


@pytest.fixture
def install_license(db, license_issuer):
    """install_license("business") puts a valid license of that plan in force."""

    def _install(plan="enterprise", **kwargs):
        text = license_issuer.issue(plan, **kwargs)
        info_plan = plan
        from fleet.licensing import verify_license

        info = verify_license(text, license_issuer.public_key)
        return License.objects.create(text=text, plan=info_plan, customer=info.customer, expires_at=info.expires_at)

    return _install


@pytest.fixture
def enterprise_license(install_license):
    return install_license("enterprise")


# --- Real services ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url():
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not port_open("127.0.0.1", 6379):
        service_unavailable("Redis on 127.0.0.1:6379")
    return url


@pytest.fixture(scope="session")
def postgres_required(django_db_setup, django_db_blocker):
    from django.db import connection

    if connection.vendor != "postgresql":
        service_unavailable("PostgreSQL (set DATABASE_URL)")


def _child_env(redis_url: str) -> dict:
    """Environment for a child process (worker, beat, server) that must see the test database."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        CELERY_BROKER_URL=redis_url,
        # The test process's own keys: a child given another VAR_DIR would generate new development
        # keys there and could not read what this process encrypted (a repository's SSH key).
        SECRET_KEY=settings.SECRET_KEY,
        FERNET_KEYS=",".join(settings.FERNET_KEYS),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def child_env(postgres_required, redis_url, settings):
    env = _child_env(redis_url)
    env["LICENSE_PUBLIC_KEY"] = settings.LICENSE_PUBLIC_KEY or ""
    return env


class CeleryProcess:
    """A real `celery worker` (or beat) subprocess against the test database and Redis."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.args, self.env, self.log_path = args, env, log
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self, sig=9):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self):
        stop_group(self.proc)
        if getattr(self, "log", None):
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def celery_worker_factory(child_env, tmp_path):
    """Start real Celery workers/beat: `celery_worker_factory()` or `celery_worker_factory(beat=True)`."""
    started = []

    def _start(*, beat=False, queues=None, extra_env=None):
        env = dict(child_env, **(extra_env or {}))
        name = f"{'beat' if beat else 'worker'}-{len(started)}"
        if beat:
            args = ["beat", "-l", "info", "-s", str(tmp_path / f"{name}-schedule")]
        else:
            args = [
                "worker",
                "-l",
                "info",
                "-c",
                "2",
                "-P",
                "threads",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ]
            if queues:
                args += ["-Q", queues]
        proc = CeleryProcess(args, env, tmp_path / f"{name}.log").start()
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.stop()


def wait_for(predicate, *, timeout=30.0, interval=0.2, message="condition"):
    """Poll until predicate() is truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


# --- Simulated fleet --------------------------------------------------------------------------


@pytest.fixture
def simulated_fleet(live_server, transactional_db):
    """Start simulated instances against `live_server`: `fleet = simulated_fleet(count=3, **kw)`.

    Each call makes a fresh multi-use registration token and waits until every instance registered
    (pass `wait=False` not to). Keyword arguments go to fleet.simulator.SimulatedFleet; instance names
    are `<name_prefix>-01`, ... (prefix "sim", then "sim2", "sim3" for further calls). All stop at teardown.
    """
    from fleet.services import registration_token_create
    from fleet.simulator import SimulatedFleet

    _serve_like_production(live_server)
    _serialize_shared_sqlite(live_server)
    fleets = []

    def _start(count=3, *, wait=True, **kwargs):
        _token, plaintext = registration_token_create(actor=None, name=f"test fleet {len(fleets) + 1}")
        kwargs.setdefault("name_prefix", "sim" if not fleets else f"sim{len(fleets) + 1}")
        fleet = SimulatedFleet(live_server.url, plaintext, count, **kwargs)
        fleets.append(fleet)
        fleet.start()
        if wait:
            fleet.wait_registered(timeout=30)
        return fleet

    yield _start
    for fleet in fleets:
        fleet.stop()


def _serve_like_production(live_server):
    """The live server runs Django's handler; production runs config.wsgi.application, which puts the
    heartbeat fast lane in front of it. Simulated agents go through the same lane here."""
    from fleet.agent.fastlane import HeartbeatFastLane

    httpd = getattr(live_server.thread, "httpd", None)
    if httpd is None or isinstance(httpd.get_app(), HeartbeatFastLane) or getattr(httpd, "_one_at_a_time", False):
        return
    httpd.set_app(HeartbeatFastLane(httpd.get_app()))


def _serialize_shared_sqlite(live_server):
    """On in-memory SQLite the live server's threads share the test's one connection, so two requests in
    flight interleave their transactions. There, run one request at a time (PostgreSQL: no change)."""
    import threading

    from django.db import connection

    httpd = getattr(live_server.thread, "httpd", None)
    if connection.vendor != "sqlite" or httpd is None or getattr(httpd, "_one_at_a_time", False):
        return
    lock, app = threading.Lock(), httpd.get_app()

    def one_at_a_time(environ, start_response):
        with lock:  # per request, not per connection: keep-alive connections must not hold it
            return app(environ, start_response)

    httpd.set_app(one_at_a_time)
    httpd._one_at_a_time = True
