"""Faults with real processes: the broker and the database go away and come back."""

import http.cookiejar
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from fleet.choices import RunStatus
from fleet.models import Command, CommandRun, Instance
from tests.conftest import wait_for
from tests.hardening.conftest import _wait_port, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _get(url, token=None, timeout=10, opener=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _signed_in_browser(base, username, password):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{base}/accounts/login/", timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf}).encode()
    request = urllib.request.Request(
        f"{base}/accounts/login/", data=data, headers={"Referer": f"{base}/accounts/login/"}
    )
    opener.open(request, timeout=10).read()
    assert any(c.name == "sessionid" for c in jar), "could not sign in"
    return opener


def test_a_postgres_restart_gives_clean_503s_and_the_app_recovers(private_postgres, tmp_path):
    env = dict(
        os.environ,
        DATABASE_URL=private_postgres.url,
        VAR_DIR=str(tmp_path),
        CONN_MAX_AGE="60",
        DJANGO_SUPERUSER_PASSWORD="x-very-long-password",
        DJANGO_SUPERUSER_EMAIL="a@example.com",
    )
    env.pop("CELERY_BROKER_URL", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", "admin"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    token = subprocess.run(
        [*manage, "create_api_token", "admin"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "30"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "gunicorn.log", "wb"),  # noqa: SIM115
    )
    try:
        _wait_port(port, timeout=30)
        url = f"http://127.0.0.1:{port}/api/fleet/summary"
        assert _get(url, token)[0] == 200
        browser = _signed_in_browser(f"http://127.0.0.1:{port}", "admin", "x-very-long-password")

        private_postgres.stop()
        status, body = _get(url, token)
        assert status == 503
        assert json.loads(body)["error"] == "database_unavailable"
        page_status, page = _get(f"http://127.0.0.1:{port}/servers/", opener=browser)
        assert page_status == 503 and "database is unavailable" in page and "Traceback" not in page

        private_postgres.start()
        wait_for(
            lambda: _get(url, token)[0] == 200, timeout=30, message="the API to answer again after PostgreSQL came back"
        )
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.django_db(transaction=True)
def test_after_a_redis_restart_beat_and_worker_recover_and_no_work_is_lost(private_redis, celery_worker_factory):
    """Work lives in the database (due-time columns); beat re-derives it, so an empty Redis loses nothing."""
    env = {"CELERY_BROKER_URL": private_redis.url}
    celery_worker_factory(extra_env=env)
    celery_worker_factory(beat=True, extra_env=env)
    time.sleep(3)

    private_redis.stop()
    instance = Instance.objects.create(name="stale-agent", status="online")
    command = Command.objects.create(kind="restart_app", params={"app": "nginx"})
    run = CommandRun.objects.create(
        command=command, instance=instance, pickup_deadline=timezone.now() - timedelta(seconds=1)
    )
    time.sleep(3)
    private_redis.start()

    def failed():
        run.refresh_from_db()
        return run.status == RunStatus.FAILED

    wait_for(
        failed, timeout=90, interval=1, message="the expired run to be failed by beat + worker after Redis came back"
    )
    assert "Not picked up" in run.error
