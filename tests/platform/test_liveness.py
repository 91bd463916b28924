"""Worker and beat heartbeats (common/liveness.py): the banner, /healthz and /metrics."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common import liveness
from common.models import ProcessHeartbeat


def _seen(component, seconds_ago, node="celery@host"):
    ProcessHeartbeat.objects.update_or_create(
        component=component, node=node, defaults={"last_seen": timezone.now() - timedelta(seconds=seconds_ago)}
    )


def test_record_inserts_then_updates_one_row_per_node(db):
    liveness.record("worker", "celery@a")
    first = ProcessHeartbeat.objects.get(component="worker", node="celery@a").last_seen
    liveness.record("worker", "celery@a")
    liveness.record("worker", "celery@b")
    assert ProcessHeartbeat.objects.filter(component="worker").count() == 2
    assert ProcessHeartbeat.objects.get(component="worker", node="celery@a").last_seen >= first


def test_the_freshest_node_decides_a_components_age(db):
    _seen("worker", 300, node="celery@old")
    _seen("worker", 5, node="celery@new")
    ages = liveness.ages()
    assert 4 < ages["worker"] < 60
    assert ages["beat"] is None


def test_healthz_is_ok_when_everything_was_seen_recently(client, db):
    _seen("worker", 5)
    _seen("beat", 5)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "database": "ok",
        "broker": "ok",
        "worker": "ok",
        "beat": "ok",
    }
    assert response["Cache-Control"] == "no-store"


def test_healthz_stays_200_but_degraded_when_the_worker_is_stale_and_beat_never_seen(client, db):
    _seen("worker", 120)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["worker"]["status"] == "stale"
    assert body["components"]["worker"]["last_seen_seconds"] >= 120
    assert body["components"]["beat"] == {"status": "unknown", "last_seen_seconds": None}


def test_healthz_answers_503_when_the_broker_is_down_and_names_no_url(client, db, settings, tmp_path):
    if settings.CELERY_BROKER_URL.startswith("atomicfs://"):
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder": str(blocker / "celery")}
    else:
        settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    assert response.json()["components"]["broker"] == {"status": "down"}
    assert b"127.0.0.1:1" not in response.content and b"not-a-folder" not in response.content


def test_healthz_answers_503_when_the_database_is_down(client, db, monkeypatch):
    def refuse():
        raise OSError("connection refused")

    monkeypatch.setattr(liveness, "check_database", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["components"]["database"] == {"status": "down"}
    assert response.json()["components"]["worker"]["status"] == "unknown"


def test_every_page_shows_the_banner_while_the_worker_is_stale(admin_client):
    _seen("beat", 5)
    _seen("worker", 600)
    page = admin_client.get("/").content.decode()
    assert 'id="liveness-banner"' in page
    assert "The Celery worker has not been seen for 10 min" in page
    assert "Celery beat" not in page


def test_the_banner_says_when_beat_was_never_seen(admin_client):
    _seen("worker", 1)
    page = admin_client.get("/").content.decode()
    assert "Celery beat has never been seen" in page
    assert "The Celery worker" not in page


def test_no_banner_when_both_were_seen_within_a_minute(admin_client):
    _seen("worker", 30)
    _seen("beat", 30)
    assert 'id="liveness-banner"' not in admin_client.get("/").content.decode()


def test_the_banner_is_not_shown_to_anonymous_visitors(client, db):
    assert 'id="liveness-banner"' not in client.get("/accounts/login/").content.decode()


def test_metrics_export_the_last_seen_age_of_each_component(client, db, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    _seen("worker", 42)
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").content.decode()
    assert "# TYPE panel_component_last_seen_seconds gauge" in text
    line = next(x for x in text.splitlines() if x.startswith('panel_component_last_seen_seconds{component="worker"}'))
    assert 42 <= float(line.split()[-1]) < 100
    assert 'component="beat"' not in text  # never seen: no sample rather than a made-up age


def test_beat_records_its_heartbeat_as_it_ticks(db, tmp_path):
    from config.celery import app

    scheduler = liveness.LivenessScheduler(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    scheduler.setup_schedule()
    assert scheduler.tick() <= 15
    assert ProcessHeartbeat.objects.filter(component="beat").count() == 1
    scheduler.close()


@pytest.mark.parametrize("component", ["worker", "beat"])
def test_a_database_error_while_recording_is_logged_not_raised(db, monkeypatch, caplog, component):
    def broken(*args, **kwargs):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(ProcessHeartbeat.objects, "filter", broken)
    liveness.record(component, "node")
    assert f"Could not record the {component} heartbeat" in caplog.text
