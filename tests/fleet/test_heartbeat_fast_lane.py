"""The heartbeat fast lane in front of Django (config.wsgi.application): an identical heartbeat is one
statement, and everything the full path enforces still holds; anything else falls through unchanged."""

import io
import json
import threading
import wsgiref.util

import pytest
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from config.wsgi import application
from fleet import services
from fleet.agent.fastlane import HeartbeatFastLane
from fleet.choices import InstanceStatus
from fleet.models import Instance

from .helpers import DEFAULT_STATE, heartbeat_body


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()


def wsgi_post(path, body: bytes, app=application, **environ_extra):
    """One request through the real WSGI application, as gunicorn would make it."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_TYPE": "application/json"}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(CONTENT_LENGTH=str(len(body)), **environ_extra)
    environ["wsgi.input"] = io.BytesIO(body)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    # As Django's test client does: the test's transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        result = app(environ, start_response)
        content = b"".join(result)
        if hasattr(result, "close"):
            result.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return seen["status"], seen["headers"], content


class Agent:
    def __init__(self, name, token):
        self.instance, self.credential = services.agent_register(
            token=token, name=name, address="127.0.0.1:9", remote_addr="127.0.0.1"
        )

    def beat(self, body: bytes, credential=None, app=application, **environ):
        auth = f"Agent {credential or self.credential}"
        return wsgi_post("/api/agent/heartbeat", body, app=app, HTTP_AUTHORIZATION=auth, **environ)

    def last_seen(self):
        return Instance.objects.get(pk=self.instance.pk).last_seen_at


@pytest.fixture
def agents(db):
    _t, token = services.registration_token_create(actor=None, name="t")
    return Agent("lane-a", token), Agent("lane-b", token)


BODY = json.dumps(heartbeat_body()).encode()


def test_the_first_heartbeat_falls_through_and_stores_the_state(agents):
    a, _b = agents
    status, _headers, content = a.beat(BODY)
    assert status == 200 and json.loads(content)["changed"] is True
    instance = Instance.objects.get(pk=a.instance.pk)
    assert instance.status == InstanceStatus.ONLINE
    assert instance.settings == DEFAULT_STATE["settings"]


def test_an_identical_heartbeat_is_answered_with_one_statement(agents, django_assert_num_queries, settings):
    a, _b = agents
    a.beat(BODY)
    before = a.last_seen()
    with django_assert_num_queries(1):
        status, _headers, content = a.beat(BODY)
    assert status == 200
    assert json.loads(content) == {"changed": False, "heartbeat_interval": settings.HEARTBEAT_INTERVAL}
    assert a.last_seen() > before


def test_the_lane_answers_with_the_same_headers_as_the_full_path(agents, settings):
    a, _b = agents
    a.beat(BODY)
    _status, lane_headers, _content = a.beat(BODY)
    full = APIClient()
    full.credentials(HTTP_AUTHORIZATION=f"Agent {a.credential}")
    changed = full.post("/api/agent/heartbeat", heartbeat_body(os_version="24.04.2"), format="json")
    assert changed.json()["changed"] is True
    for name in (
        "Content-Type",
        "X-Frame-Options",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Cross-Origin-Opener-Policy",
        "Content-Security-Policy",
        "Permissions-Policy",
    ):
        assert lane_headers.get(name) == changed.headers.get(name), name
    assert lane_headers["Cache-Control"] == "no-store"


def test_a_changed_heartbeat_falls_through_with_its_body_intact(agents):
    a, _b = agents
    a.beat(BODY)
    changed = json.dumps(heartbeat_body(settings={"ssh.password_auth": True})).encode()
    status, _headers, content = a.beat(changed)
    assert status == 200 and json.loads(content)["changed"] is True
    assert Instance.objects.get(pk=a.instance.pk).settings == {"ssh.password_auth": True}
    # ...and the previous body is now a change again, not a touch.
    status, _headers, content = a.beat(BODY)
    assert json.loads(content)["changed"] is True


def test_a_forged_secret_is_refused_and_touches_nothing(agents):
    a, _b = agents
    a.beat(BODY)
    before = a.last_seen()
    status, _headers, content = a.beat(BODY, credential=f"{a.instance.agent_key_id}.not-the-secret")
    assert status == 401
    assert json.loads(content)["error"]
    assert a.last_seen() == before


def test_one_instances_credential_never_touches_another(agents):
    a, b = agents
    a.beat(BODY)
    a_seen = a.last_seen()
    status, _headers, _content = b.beat(BODY)  # B reports the same state: recorded for B only
    assert status == 200
    assert a.last_seen() == a_seen
    assert b.last_seen() is not None


def test_malformed_json_falls_through_to_the_full_paths_error(agents):
    a, _b = agents
    status, _headers, content = a.beat(b'{"os_version": ')
    assert status == 400
    assert "JSON" in json.loads(content)["message"] or json.loads(content)["error"] == "parse_error"


def test_an_equal_state_in_another_byte_order_is_no_change_and_then_takes_the_lane(agents, django_assert_num_queries):
    a, _b = agents
    a.beat(BODY)
    reordered = json.dumps(dict(reversed(list(heartbeat_body().items()))), indent=1).encode()
    status, _headers, content = a.beat(reordered)
    assert status == 200 and json.loads(content)["changed"] is False
    with django_assert_num_queries(1):  # now the stored body digest is this one
        status, _headers, content = a.beat(reordered)
    assert json.loads(content)["changed"] is False


def test_an_offline_instance_comes_back_through_the_full_path(agents):
    a, _b = agents
    a.beat(BODY)
    Instance.objects.filter(pk=a.instance.pk).update(status=InstanceStatus.OFFLINE)
    status, _headers, _content = a.beat(BODY)
    assert status == 200
    assert Instance.objects.get(pk=a.instance.pk).status == InstanceStatus.ONLINE


def test_a_state_recorded_elsewhere_stops_the_old_body_from_taking_the_lane(agents):
    a, _b = agents
    a.beat(BODY)
    instance = Instance.objects.get(pk=a.instance.pk)
    services.heartbeat_record(instance=instance, state={"os_version": "25.04", "apps": []})
    status, _headers, content = a.beat(BODY)
    assert json.loads(content)["changed"] is True
    assert Instance.objects.get(pk=a.instance.pk).os_version == DEFAULT_STATE["os_version"]


def test_a_host_not_in_allowed_hosts_is_refused(agents):
    a, _b = agents
    a.beat(BODY)
    before = a.last_seen()
    status, _headers, _content = a.beat(BODY, HTTP_HOST="evil.example")
    assert status == 400
    assert a.last_seen() == before


def test_plain_http_is_redirected_when_https_is_required(agents, settings):
    a, _b = agents
    a.beat(BODY)
    settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS = True, 3600
    app = HeartbeatFastLane(WSGIHandler())  # middleware reads its settings when the app is built
    status, headers, _content = a.beat(BODY, app=app)
    assert status == 301 and headers["Location"].startswith("https://")
    status, headers, _content = a.beat(BODY, app=app, HTTP_X_FORWARDED_PROTO="https")
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=3600")


def test_the_lane_counts_against_the_agent_throttle(agents, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    a, _b = agents
    a.beat(BODY)
    cache.clear()
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"agent": "3/min", "register": "60/min"})
    codes = [a.beat(BODY)[0] for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_a_connection_the_database_dropped_is_replaced_without_an_error(
    postgres_required, transactional_db, monkeypatch
):
    """The touch stands in for the connection health check (no separate SELECT 1 round trip): a reused
    connection the server killed is replaced and the heartbeat still answered, with no 5xx."""
    _t, token = services.registration_token_create(actor=None, name="t")
    a = Agent("lane-reconnect", token)
    a.beat(BODY)
    close_old_connections()  # what the end of that request does outside tests: re-arms the health check
    probes = []
    wrapper_class = type(connections["default"])
    real_is_usable = wrapper_class.is_usable
    monkeypatch.setattr(wrapper_class, "is_usable", lambda self: probes.append(1) or real_is_usable(self))
    assert a.beat(BODY)[0] == 200
    assert probes == [], "the heartbeat paid for a separate health-check round trip"
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    status, _headers, content = a.beat(BODY)
    assert status == 200 and json.loads(content)["changed"] is False
    assert Instance.objects.get(pk=a.instance.pk).last_seen_at > timezone.now() - timezone.timedelta(seconds=5)


def test_requests_in_parallel_from_many_threads_all_get_answers(postgres_required, transactional_db):
    _t, token = services.registration_token_create(actor=None, name="t")
    agents = [Agent(f"lane-par-{n}", token) for n in range(4)]
    for agent in agents:
        agent.beat(BODY)
    codes = []

    def run(agent):
        try:
            codes.extend(agent.beat(BODY)[0] for _ in range(10))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(agent,)) for agent in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 40


# --- Conditional heartbeats: no body, If-Match naming the last stored one -------------------------


def test_every_stored_heartbeat_answers_with_the_etag_of_its_state(agents):
    a, _b = agents
    _status, headers, _content = a.beat(BODY)
    assert headers["ETag"] == f'"{services.heartbeat_digest(BODY)}"'
    _status, lane_headers, _content = a.beat(BODY)  # the lane too
    assert lane_headers["ETag"] == headers["ETag"]


def test_a_conditional_heartbeat_is_one_statement_without_a_body(agents, django_assert_num_queries):
    a, _b = agents
    _status, headers, _content = a.beat(BODY)
    before = a.last_seen()
    with django_assert_num_queries(1):
        status, _headers, content = a.beat(b"", HTTP_IF_MATCH=headers["ETag"])
    assert status == 200 and json.loads(content)["changed"] is False
    assert a.last_seen() > before


def test_a_conditional_heartbeat_the_panel_cannot_match_asks_for_the_full_state(agents):
    a, b = agents
    a.beat(BODY)
    for etag in (f'"{"0" * 64}"', '"not-a-digest"'):
        status, _headers, content = a.beat(b"", HTTP_IF_MATCH=etag)
        assert status == 412
        assert json.loads(content)["error"] == "state_required"
    # Another instance's digest is no good either: the credential and the digest must match one row.
    b.beat(json.dumps(heartbeat_body(os_version="24.04.2")).encode())
    status, _headers, _content = b.beat(b"", HTTP_IF_MATCH=f'"{services.heartbeat_digest(BODY)}"')
    assert status == 412


def test_a_conditional_heartbeat_with_a_forged_secret_is_refused(agents):
    a, _b = agents
    _status, headers, _content = a.beat(BODY)
    key_id = a.credential.split(".")[0]
    status, _headers, _content = a.beat(b"", credential=f"{key_id}.forged", HTTP_IF_MATCH=headers["ETag"])
    assert status == 401


def test_a_state_recorded_elsewhere_makes_the_old_etag_stale(agents):
    a, _b = agents
    _status, headers, _content = a.beat(BODY)
    a.beat(json.dumps(heartbeat_body(os_version="24.04.2")).encode())
    status, _headers, _content = a.beat(b"", HTTP_IF_MATCH=headers["ETag"])
    assert status == 412


def test_an_empty_heartbeat_without_if_match_is_refused_in_words(agents):
    a, _b = agents
    status, _headers, content = a.beat(b"")
    assert status == 400
    assert json.loads(content)["message"] == "Send the state as a JSON object."


def test_apps_rewritten_behind_the_panel_are_replaced_by_the_next_identical_heartbeat(agents):
    """A script or a restored backup rewrites `apps` with a raw UPDATE. The agent's next heartbeat
    reports the same packages as before: it must take the full path and put them back (with their
    index), not be touched through the lane or matched against the old apps digest (migration 0007)."""
    a, _b = agents
    a.beat(BODY)
    a.beat(BODY)  # the lane now answers this body
    reported = Instance.objects.get(pk=a.instance.pk)
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE fleet_instance SET apps = %s{cast} WHERE id = %s", ["[]", a.instance.pk])  # noqa: S608
    assert Instance.objects.get(pk=a.instance.pk).apps == []

    status, _headers, content = a.beat(BODY)

    assert status == 200 and json.loads(content)["changed"] is True
    restored = Instance.objects.get(pk=a.instance.pk)
    assert restored.apps == DEFAULT_STATE["apps"] == reported.apps
    assert restored.apps_text == reported.apps_text is not None
    assert restored.apps_hash == reported.apps_hash
    # ...and once restored, the same body is a touch again.
    assert json.loads(a.beat(BODY)[2])["changed"] is False
