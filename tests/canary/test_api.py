"""The API at exactly the spec's paths: status codes, roles, license, conflicts."""

import pytest

from canary.choices import Phase
from canary.models import CanaryDeployment
from tests.base import assert_status

from .conftest import agent_finishes
from .helpers import canary_runs, start

BODY = {
    "name": "web-app 2.0",
    "change": {"kind": "update_app", "params": {"app": "web-app", "version": "2.0"}},
    "scope": {"kind": "all"},
    "canary": {"percentage": 33},
    "criteria": ["online", "health_check"],
    "success_threshold": 100,
    "check_interval": 5,
    "max_duration": 60,
}


@pytest.fixture
def fleet(make_fleet, canary_license):
    return make_fleet(3)


def test_create_returns_201_with_the_canary_set(fleet, operator_api):
    response = operator_api.post("/api/fleet/canary", BODY, format="json")
    assert_status(response, 201)
    data = response.json()
    assert data["phase"] == "canary"
    assert data["change"]["description"] == "update_app web-app → 2.0"
    assert data["health_check_url"] == "/health" and data["check_interval"] == 5
    assert [i["instance"] for i in data["health"]["instances"]] == ["web-1"]
    assert data["health"]["rollout"]["planned"] == 2


def test_create_with_named_instances(fleet, operator_api):
    body = {**BODY, "canary": {"instances": [fleet[1].pk]}}
    response = operator_api.post("/api/fleet/canary", body, format="json")
    assert_status(response, 201)
    assert response.json()["canary_selection"] == {"instances": [fleet[1].pk]}


def test_create_with_bad_input_is_400_in_words(fleet, operator_api):
    response = operator_api.post("/api/fleet/canary", {**BODY, "health_check_url": "health"}, format="json")
    assert_status(response, 400)
    assert response.json()["errors"] == {
        "health_check_url": ["The health check URL must be a path starting with / (e.g. /health), not a full URL."]
    }
    response = operator_api.post("/api/fleet/canary", {**BODY, "canary": {}}, format="json")
    assert_status(response, 400)
    assert "either a percentage or a list" in response.json()["message"]
    assert not CanaryDeployment.objects.exists()


def test_create_refused_by_preflight_is_400_with_the_excluded_list(fleet, operator_api):
    fleet[0].server.mode = "fail"
    response = operator_api.post("/api/fleet/canary", {**BODY, "preflight": "block"}, format="json")
    assert_status(response, 400)
    assert response.json()["excluded"] == [{"instance": "web-1", "reason": "unhealthy before the change: HTTP 500"}]


def test_list_and_status_with_health_metrics(fleet, operator_user, viewer_api):
    deployment = start(operator_user, percentage=33)
    agent_finishes(canary_runs(deployment))
    from canary.services import canary_advance

    canary_advance(deployment_id=deployment.pk)
    listing = viewer_api.get("/api/fleet/canary")
    assert_status(listing, 200)
    assert [d["id"] for d in listing.json()["results"]] == [deployment.pk]
    status = viewer_api.get(f"/api/fleet/canary/{deployment.pk}")
    assert_status(status, 200)
    data = status.json()
    assert data["phase"] == "evaluation"
    assert data["started_at"] and data["evaluation_started_at"]
    assert data["failure_reason"] == ""
    assert data["health"]["poll_count"] == 0
    assert data["health"]["healthy_percent"] is None


def test_status_after_a_round_has_per_instance_latest_health(fleet, operator_user, viewer_api):
    deployment = start(operator_user, percentage=33, consecutive_healthy=2)
    agent_finishes(canary_runs(deployment))
    from canary.services import canary_advance

    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    data = viewer_api.get(f"/api/fleet/canary/{deployment.pk}").json()
    health = data["health"]
    # Every poll of the round was healthy; none counts towards the threshold yet (2 in a row needed).
    assert (health["poll_count"], health["healthy_percent"], health["passing"]) == (1, 100.0, 0)
    assert health["instances"][0]["consecutive_healthy"] == 1
    latest = health["instances"][0]["latest"]
    assert (latest["instance"], latest["status_code"], latest["healthy"]) == ("web-1", 200, True)
    assert health["rounds"][0]["number"] == 1


def test_unknown_deployment_is_404(fleet, viewer_api):
    assert_status(viewer_api.get("/api/fleet/canary/999"), 404)


def test_promote_and_rollback_return_the_new_phase(fleet, operator_user, operator_api):
    deployment = start(operator_user, percentage=33)
    response = operator_api.post(f"/api/fleet/canary/{deployment.pk}/promote")
    assert_status(response, 200)
    assert response.json()["phase"] == "rollout"
    assert response.json()["actions"] == {
        "promote": False,
        "rollback": True,
        "approve": False,
        "pause": True,
        "resume": False,
    }
    response = operator_api.post(f"/api/fleet/canary/{deployment.pk}/rollback", {"reason": "latency"}, format="json")
    assert_status(response, 200)
    assert response.json()["phase"] == "rollback"
    assert response.json()["failure_reason"] == "Rolled back by oscar: latency"


def test_promoting_a_rolled_back_deployment_is_409_with_the_reason(fleet, operator_user, operator_api):
    deployment = start(operator_user, percentage=33)
    CanaryDeployment.objects.filter(pk=deployment.pk).update(phase=Phase.ROLLED_BACK)
    response = operator_api.post(f"/api/fleet/canary/{deployment.pk}/promote")
    assert_status(response, 409)
    assert response.json() == {
        "error": "conflict",
        "message": "Cannot promote this deployment: it was rolled back.",
        "errors": {},
        "phase": "rolled_back",
    }
    response = operator_api.post(f"/api/fleet/canary/{deployment.pk}/rollback")
    assert_status(response, 409)
    assert response.json()["message"] == "Cannot roll back this deployment: it was rolled back."


def test_viewers_read_but_cannot_create_promote_or_roll_back(fleet, operator_user, viewer_api):
    deployment = start(operator_user, percentage=33)
    assert_status(viewer_api.get("/api/fleet/canary"), 200)
    assert_status(viewer_api.post("/api/fleet/canary", BODY, format="json"), 403)
    assert_status(viewer_api.post(f"/api/fleet/canary/{deployment.pk}/promote"), 403)
    assert_status(viewer_api.post(f"/api/fleet/canary/{deployment.pk}/rollback"), 403)
    deployment.refresh_from_db()
    assert deployment.phase == Phase.CANARY


def test_anonymous_requests_are_401(fleet, client):
    from rest_framework.test import APIClient

    assert_status(APIClient().get("/api/fleet/canary"), 401)


def test_without_the_license_feature_new_deployments_and_moving_on_are_402(make_fleet, install_license, operator_api):
    install_license("pro")
    make_fleet(2)
    for path in [
        "/api/fleet/canary",
        "/api/fleet/canary/1/promote",
        "/api/fleet/canary/1/approve",
        "/api/fleet/canary/1/resume",
    ]:
        response = operator_api.post(path, BODY, format="json")
        assert_status(response, 402)
        assert response.json()["error"] == "upgrade_required"
        assert response.json()["feature"] == "canary_deployments"
        assert response.json()["required_plan"] == "business"


def test_after_a_license_downgrade_a_running_deployment_can_still_be_read_paused_and_rolled_back(
    fleet, operator_user, operator_api, install_license
):
    deployment = start(operator_user, percentage=33)
    install_license("pro")  # the newest license is the one in force
    assert_status(operator_api.get("/api/fleet/canary"), 200)
    status = operator_api.get(f"/api/fleet/canary/{deployment.pk}")
    assert_status(status, 200)
    # What the API says may be done is what it then allows: stopping yes, moving on no.
    assert status.json()["actions"] == {
        "promote": False,
        "rollback": True,
        "approve": False,
        "pause": True,
        "resume": False,
    }
    assert_status(operator_api.get(f"/api/fleet/canary/{deployment.pk}/polls"), 200)
    assert_status(operator_api.post(f"/api/fleet/canary/{deployment.pk}/pause"), 200)
    assert_status(operator_api.post(f"/api/fleet/canary/{deployment.pk}/resume"), 402)
    assert_status(operator_api.post(f"/api/fleet/canary/{deployment.pk}/promote"), 402)
    response = operator_api.post(f"/api/fleet/canary/{deployment.pk}/rollback", {"reason": "license"}, format="json")
    assert_status(response, 200)
    assert response.json()["phase"] == "rollback"
    assert_status(operator_api.post("/api/fleet/canary", BODY, format="json"), 402)


def test_the_openapi_schema_documents_the_canary_paths(admin_api):
    response = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert_status(response, 200)
    paths = response.json()["paths"] if response["Content-Type"].startswith("application/json") else {}
    if not paths:
        import yaml

        paths = yaml.safe_load(response.content)["paths"]
    assert {
        "/api/fleet/canary",
        "/api/fleet/canary/{id}",
        "/api/fleet/canary/{id}/promote",
        "/api/fleet/canary/{id}/rollback",
        "/api/fleet/canary/{id}/polls",
        "/api/fleet/canary/{id}/approve",
        "/api/fleet/canary/{id}/pause",
        "/api/fleet/canary/{id}/resume",
    } <= set(paths)


def test_listing_costs_the_same_few_queries_for_many_deployments(
    fleet, operator_user, viewer_api, django_assert_max_num_queries
):
    for _ in range(6):
        done = start(operator_user, percentage=33)
        CanaryDeployment.objects.filter(pk=done.pk).update(phase=Phase.ROLLED_BACK)  # else the next overlaps it
    with django_assert_max_num_queries(12):
        response = viewer_api.get("/api/fleet/canary")
    assert len(response.json()["results"]) == 6


def test_the_issues_healthy_canary_is_accepted_with_its_interval_reported_unchanged(
    make_fleet, canary_license, operator_api
):
    make_fleet(20)
    body = {
        "change": {"kind": "update_app", "params": {"app": "web-app", "version": "10.1.3"}},
        "canary": {"percentage": 20},
        "check_interval": 1,
        "max_duration": 40,
        "consecutive_healthy_polls": 15,
    }
    response = operator_api.post("/api/fleet/canary", body, format="json")
    assert_status(response, 201)
    data = response.json()
    assert (data["check_interval"], data["max_duration"], data["consecutive_healthy_polls"]) == (1, 40, 15)
    assert data["probe_timeout"] == 0.5  # at most half the interval, so a round ends before the next is due
    assert data["steps"][0]["reached"] == 4  # 20 % of 20


def test_approve_pause_and_resume_through_the_api_return_the_new_state(fleet, operator_user, operator_api):
    deployment = start(operator_user, steps=[{"percentage": 33, "approval": True}, {"percentage": 100}])
    url = f"/api/fleet/canary/{deployment.pk}"
    early = operator_api.post(f"{url}/approve")
    assert_status(early, 409)
    assert "not waiting for an approval" in early.json()["message"]
    paused = operator_api.post(f"{url}/pause", {"reason": "watching the graphs"}, format="json")
    assert_status(paused, 200)
    assert (paused.json()["paused"], paused.json()["pause_reason"]) == (True, "watching the graphs")
    assert paused.json()["actions"]["resume"] and not paused.json()["actions"]["pause"]
    assert_status(operator_api.post(f"{url}/pause"), 409)
    resumed = operator_api.post(f"{url}/resume")
    assert_status(resumed, 200)
    assert resumed.json()["paused"] is False
    agent_finishes(canary_runs(deployment))
    from canary.services import canary_advance

    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    waiting = operator_api.get(url).json()
    assert waiting["awaiting_approval"] and waiting["actions"]["approve"]
    approved = operator_api.post(f"{url}/approve")
    assert_status(approved, 200)
    assert approved.json()["phase"] == "rollout" and approved.json()["awaiting_approval"] is False


def test_viewers_cannot_approve_pause_or_resume(fleet, operator_user, viewer_api):
    deployment = start(operator_user, percentage=33)
    actions = viewer_api.get(f"/api/fleet/canary/{deployment.pk}").json()["actions"]
    assert actions == dict.fromkeys(("promote", "rollback", "approve", "pause", "resume"), False)  # not theirs
    for action in ("approve", "pause", "resume"):
        assert_status(viewer_api.post(f"/api/fleet/canary/{deployment.pk}/{action}"), 403)
    deployment.refresh_from_db()
    assert not deployment.paused
