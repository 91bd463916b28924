"""The agent API: agents authenticate as their instance only, and heartbeats are cheap and idempotent."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from fleet import services
from fleet.choices import CommandType, InstanceStatus, RunStatus, ScopeKind
from fleet.models import CommandRun, Instance
from fleet.scopes import Scope
from fleet.signals import instance_state_changed
from tests.base import assert_status

from .helpers import DEFAULT_STATE, agent_client, heartbeat_body, make_instance, register_agent


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()


@pytest.fixture
def agents(db):
    """Two registered agents, A and B."""
    _t, token = services.registration_token_create(actor=None, name="t")
    a, client_a = register_agent("agent-a", token=token)
    b, client_b = register_agent("agent-b", token=token)
    return a, client_a, b, client_b


def queue(instance, kind=CommandType.RESTART_APP, params=None):
    scope = Scope(kind=ScopeKind.INSTANCES, instance_ids=(instance.pk,))
    command = services.command_create(actor=None, kind=kind, params=params or {"app": "nginx"}, scope=scope)
    return command.runs.get()


# --- authentication and isolation ---------------------------------------------------------------


def test_agent_endpoints_refuse_requests_without_a_credential(db):
    for method, path in [
        ("post", "/api/agent/heartbeat"),
        ("get", "/api/agent/commands"),
        ("post", "/api/agent/commands/1/result"),
    ]:
        response = getattr(APIClient(), method)(path, {}, format="json")
        assert_status(response, 401)
        assert response["WWW-Authenticate"] == "Agent"


def test_a_wrong_or_malformed_agent_credential_is_refused(agents):
    a, *_ = agents
    for credential in (f"{a.agent_key_id}.wrong-secret", "no-dot", "x y"):
        assert_status(agent_client(credential).post("/api/agent/heartbeat", heartbeat_body(), format="json"), 401)


def test_a_user_token_or_session_is_refused_on_agent_endpoints(agents, admin_api, admin_client):
    # A Bearer token or session is not an agent credential: the request is simply unauthenticated.
    assert_status(admin_api.post("/api/agent/heartbeat", heartbeat_body(), format="json"), 401)
    assert_status(admin_api.get("/api/agent/commands"), 401)
    assert_status(admin_client.get("/api/agent/commands"), 401)


def test_an_agent_credential_is_refused_on_user_endpoints(agents):
    _a, client_a, *_ = agents
    for path in ("/api/fleet/instances", "/api/fleet/summary", "/api/audit", "/api/license"):
        assert client_a.get(path).status_code in (401, 403), path
    assert client_a.post("/api/fleet/commands", {}, format="json").status_code in (401, 403)


def test_an_instance_never_receives_another_instances_commands(agents):
    a, client_a, b, client_b = agents
    queue(b)
    assert client_a.get("/api/agent/commands").json() == {"commands": []}
    assert len(client_b.get("/api/agent/commands").json()["commands"]) == 1


def test_an_instance_cannot_report_on_another_instances_run(agents):
    a, client_a, b, client_b = agents
    run_b = queue(b)
    client_b.get("/api/agent/commands")
    response = client_a.post(f"/api/agent/commands/{run_b.pk}/result", {"status": "completed"}, format="json")
    assert_status(response, 404)
    response = client_a.post(
        f"/api/agent/commands/{run_b.pk}/result", {"status": "running", "progress": 50}, format="json"
    )
    assert_status(response, 404)
    run_b.refresh_from_db()
    assert (run_b.status, run_b.progress) == (RunStatus.RUNNING, 0)


def test_a_deleted_instance_can_no_longer_authenticate(agents, admin_user):
    a, client_a, *_ = agents
    services.instance_delete(actor=admin_user, instance=a)
    assert_status(client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json"), 401)


# --- heartbeats ----------------------------------------------------------------------------------


def test_the_first_heartbeat_brings_the_instance_online_with_its_state(agents):
    a, client_a, *_ = agents
    assert a.status == InstanceStatus.PENDING
    response = client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    assert_status(response, 200)
    assert response.json()["changed"] is True
    a.refresh_from_db()
    assert a.status == InstanceStatus.ONLINE
    assert a.last_seen_at is not None
    assert [app["name"] for app in a.apps] == ["monitoring-agent", "nginx"]
    assert a.settings == DEFAULT_STATE["settings"]
    assert a.updates[0]["version"] == "24.04.3"
    assert a.agent_version == "test-1"


def test_an_unchanged_heartbeat_is_a_single_update(agents, django_assert_num_queries):
    a, client_a, *_ = agents
    client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    before = Instance.objects.get(pk=a.pk).last_seen_at
    with django_assert_num_queries(1):
        response = client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    assert response.json()["changed"] is False
    assert Instance.objects.get(pk=a.pk).last_seen_at > before


def test_a_changed_heartbeat_costs_at_most_three_queries(agents, django_assert_max_num_queries):
    _a, client_a, *_ = agents
    client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    with django_assert_max_num_queries(3):
        response = client_a.post("/api/agent/heartbeat", heartbeat_body(os_version="24.04.3"), format="json")
    assert response.json()["changed"] is True


def test_the_fast_path_still_checks_the_secret(agents):
    a, client_a, *_ = agents
    client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    before = Instance.objects.get(pk=a.pk).last_seen_at
    forged = agent_client(f"{a.agent_key_id}.not-the-secret")
    assert_status(forged.post("/api/agent/heartbeat", heartbeat_body(), format="json"), 401)
    assert Instance.objects.get(pk=a.pk).last_seen_at == before


def test_the_fast_path_counts_against_the_agent_throttle(agents, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    _a, client_a, *_ = agents
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"agent": "3/min", "register": "60/min"})
    codes = [client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_a_new_agent_version_is_recorded(agents):
    a, client_a, *_ = agents
    client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    client_a.post("/api/agent/heartbeat", heartbeat_body(agent_version="test-2"), format="json")
    assert Instance.objects.get(pk=a.pk).agent_version == "test-2"


def test_only_a_changed_state_signals_other_apps(agents, django_capture_on_commit_callbacks):
    a, client_a, *_ = agents
    received = []

    def receiver(sender, instance_id, **kwargs):
        received.append(instance_id)

    instance_state_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
        with django_capture_on_commit_callbacks(execute=True):
            client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
        assert received == [a.pk]
        with django_capture_on_commit_callbacks(execute=True):
            client_a.post("/api/agent/heartbeat", heartbeat_body(settings={"ssh.password_auth": True}), format="json")
        assert received == [a.pk, a.pk]
    finally:
        instance_state_changed.disconnect(receiver)


def test_the_same_state_in_another_order_is_not_a_change(agents):
    a, client_a, *_ = agents
    client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    reordered = heartbeat_body(apps=list(reversed(DEFAULT_STATE["apps"])))
    assert client_a.post("/api/agent/heartbeat", reordered, format="json").json()["changed"] is False


def test_a_heartbeat_brings_an_offline_instance_back_online(agents):
    a, client_a, *_ = agents
    client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    Instance.objects.filter(pk=a.pk).update(status=InstanceStatus.OFFLINE)
    client_a.post("/api/agent/heartbeat", heartbeat_body(), format="json")
    a.refresh_from_db()
    assert a.status == InstanceStatus.ONLINE


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"apps": [{"version": "1"}]}, "apps[0].name"),
        ({"apps": "nginx"}, "apps"),
        ({"settings": ["a"]}, "settings"),
        ({"settings": {"k": {"nested": 1}}}, "settings.k"),
        ({"updates": [{"name": "os", "version": "1", "released_at": "yesterday"}]}, "updates[0].released_at"),
        ({"os_version": 24}, "os_version"),
    ],
)
def test_a_malformed_heartbeat_is_refused_with_the_field_and_changes_nothing(agents, body, field):
    a, client_a, *_ = agents
    response = client_a.post("/api/agent/heartbeat", body, format="json")
    assert_status(response, 400)
    assert list(response.json()["errors"]) == [field]
    a.refresh_from_db()
    assert a.status == InstanceStatus.PENDING


# --- commands over the agent API -------------------------------------------------------------------


def test_fetching_delivers_each_pending_run_once_and_marks_it_running(agents):
    a, client_a, *_ = agents
    run = queue(a, CommandType.UPDATE_APP, {"app": "nginx", "version": "1.26.2"})
    commands = client_a.get("/api/agent/commands").json()["commands"]
    assert [(c["run_id"], c["kind"], c["params"]) for c in commands] == [
        (run.pk, "update_app", {"app": "nginx", "version": "1.26.2"})
    ]
    assert client_a.get("/api/agent/commands").json()["commands"] == []
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.finish_deadline is not None


def test_progress_then_result_are_recorded_and_a_finished_run_cannot_change(agents):
    a, client_a, *_ = agents
    run = queue(a)
    client_a.get("/api/agent/commands")
    url = f"/api/agent/commands/{run.pk}/result"
    response = client_a.post(
        url, {"status": "running", "progress": 40, "progress_message": "restarting"}, format="json"
    )
    assert_status(response, 200)
    run.refresh_from_db()
    assert (run.progress, run.progress_message) == (40, "restarting")
    assert_status(client_a.post(url, {"status": "completed", "output": "done"}, format="json"), 200)
    run.refresh_from_db()
    assert (run.status, run.output, run.progress) == (RunStatus.COMPLETED, "done", 100)
    response = client_a.post(url, {"status": "failed", "error": "too late"}, format="json")
    assert_status(response, 400)
    assert "already completed" in response.json()["message"]


def test_a_failure_keeps_the_agents_error(agents):
    a, client_a, *_ = agents
    run = queue(a)
    client_a.get("/api/agent/commands")
    client_a.post(
        f"/api/agent/commands/{run.pk}/result", {"status": "failed", "error": "nginx: no such unit"}, format="json"
    )
    run.refresh_from_db()
    assert (run.status, run.error) == (RunStatus.FAILED, "nginx: no such unit")


def test_an_unknown_report_status_is_refused(agents):
    a, client_a, *_ = agents
    run = queue(a)
    response = client_a.post(f"/api/agent/commands/{run.pk}/result", {"status": "done"}, format="json")
    assert_status(response, 400)
    assert CommandRun.objects.get(pk=run.pk).status == RunStatus.PENDING


def test_healthz_answers_without_authentication_and_reveals_nothing(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "components"}  # component states only (tests/platform/test_liveness.py)
    assert set(body["components"]) == {"database", "broker", "worker", "beat"}


def test_the_agent_endpoints_are_in_the_openapi_schema(admin_api):
    response = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    paths = response.json()["paths"]
    for path in (
        "/api/agent/register",
        "/api/agent/heartbeat",
        "/api/agent/commands",
        "/api/agent/commands/{run_id}/result",
    ):
        assert path in paths
    assert "agentCredential" in response.json()["components"]["securitySchemes"]


def test_make_instance_helper_matches_registered_shape(db):
    instance = make_instance("x", tags=["env=production"])
    assert instance.state["os_version"] == "24.04.1"


def test_livez_answers_without_authentication_or_any_query(client, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/livez")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert response["Cache-Control"] == "no-store"


# --- at-least-once delivery ----------------------------------------------------------------------


def _as_if_delivered_seconds_ago(run, seconds):
    CommandRun.objects.filter(pk=run.pk).update(delivered_at=timezone.now() - timedelta(seconds=seconds))


def test_a_delivery_the_agent_never_acknowledged_is_delivered_again(agents, settings):
    """The reply to GET /commands was lost: the agent says nothing about the run, so it comes again."""
    settings.COMMAND_REDELIVER_AFTER = 60
    a, client_a, *_ = agents
    run = queue(a)
    assert [c["run_id"] for c in client_a.get("/api/agent/commands").json()["commands"]] == [run.pk]
    assert client_a.get("/api/agent/commands").json() == {"commands": []}  # not again at once
    _as_if_delivered_seconds_ago(run, 61)
    assert [c["run_id"] for c in client_a.get("/api/agent/commands").json()["commands"]] == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.deliveries) == (RunStatus.RUNNING, 2)
    assert timezone.now() - run.delivered_at < timedelta(seconds=5)  # the deadline counts from this delivery
    assert_status(client_a.post(f"/api/agent/commands/{run.pk}/result", {"status": "completed"}, format="json"), 200)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and run.acknowledged_at is not None


def test_a_run_the_agent_acknowledged_is_never_delivered_again(agents, settings):
    settings.COMMAND_REDELIVER_AFTER = 60
    a, client_a, *_ = agents
    run = queue(a)
    client_a.get("/api/agent/commands")
    progress = {"status": "running", "progress": 10, "progress_message": "starting"}
    assert_status(client_a.post(f"/api/agent/commands/{run.pk}/result", progress, format="json"), 200)
    _as_if_delivered_seconds_ago(run, 3600)
    assert client_a.get("/api/agent/commands").json() == {"commands": []}
    run.refresh_from_db()
    assert run.deliveries == 1 and run.acknowledged_at is not None


def test_an_unacknowledged_run_is_not_delivered_again_after_its_pickup_deadline(agents, settings):
    """Past the pickup deadline the run waits for its finish deadline, which fails it with the reason."""
    settings.COMMAND_REDELIVER_AFTER = 60
    a, client_a, *_ = agents
    run = queue(a)
    client_a.get("/api/agent/commands")
    CommandRun.objects.filter(pk=run.pk).update(
        delivered_at=timezone.now() - timedelta(seconds=400), pickup_deadline=timezone.now() - timedelta(seconds=1)
    )
    assert client_a.get("/api/agent/commands").json() == {"commands": []}
