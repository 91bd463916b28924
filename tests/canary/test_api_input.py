"""Hostile and malformed canary input: one envelope, every problem at once, by the request's field paths;
and every poll in the API."""

import pytest
from django.utils import timezone

from canary.models import CanaryDeployment
from fleet.choices import InstanceStatus
from fleet.models import Instance
from tests.base import assert_status

from .conftest import agent_finishes
from .helpers import canary_runs, start

BODY = {
    "change": {"kind": "update_app", "params": {"app": "web-app", "version": "2.0"}},
    "canary": {"percentage": 50},
    "criteria": ["online", "health_check"],
    "check_interval": 5,
    "max_duration": 60,
}


@pytest.fixture
def fleet(make_fleet, canary_license):
    return make_fleet(3)


def post(api, body):
    return api.post("/api/fleet/canary", body, format="json")


def test_every_problem_of_a_deployment_comes_at_once_under_its_own_field_path(fleet, operator_api):
    body = {
        **BODY,
        "scope": {"kind": "instances", "instances": [fleet[0].pk, fleet[1].pk]},
        "canary": {"instances": [fleet[2].pk]},  # outside the scope
        "change": {"kind": "update_app", "params": {"app": "web-app", "version": "banana"}},
        "health_check_url": "http://169.254.169.254/latest/meta-data/",
        "check_interval": 10,
        "max_duration": 5,  # shorter than the interval
        "consecutive_healthy_polls": 3,  # 3 polls every 10 s cannot fit in 5 s
    }
    response = post(operator_api, body)
    assert_status(response, 400)
    data = response.json()
    assert data["error"] == "invalid"
    assert set(data["errors"]) == {
        "canary.instances",
        "change.params.version",
        "health_check_url",
        "max_duration",
        "consecutive_healthy_polls",
    }
    assert data["errors"]["canary.instances"] == [
        "Canary instances must be in the deployment's scope; not in it: web-3."
    ]
    assert data["errors"]["change.params.version"] == ["'version' must be a version such as 1.4.2."]
    assert "must be at least the check interval" in data["errors"]["max_duration"][0]
    assert "could never pass" in data["errors"]["consecutive_healthy_polls"][0]
    assert data["message"].startswith("5 problems: ")
    assert not CanaryDeployment.objects.exists()


@pytest.mark.parametrize(
    "path",
    ["health", "//evil.example/x", "/a@evil.example", "/x\\y", "/x y", "/x#frag", "http://x/health", "/\u0007"],
)
def test_a_health_url_must_be_a_plain_path_on_the_instance(fleet, operator_api, path):
    response = post(operator_api, {**BODY, "health_check_url": path})
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["health_check_url"]


def test_steps_are_checked_item_by_item_with_their_index(fleet, operator_api):
    body = {**BODY, "canary": None, "steps": [{"percentage": 50}, {"percentage": 40}, {"instances": [fleet[0].pk]}, {}]}
    del body["canary"]
    response = post(operator_api, body)
    assert_status(response, 400)
    errors = response.json()["errors"]
    assert "more of the scope than the one before (50 %)" in errors["steps[1].percentage"][0]
    assert errors["steps[3]"] == ["Give either a percentage of the scope or a list of instances."]
    both = post(operator_api, {**BODY, "steps": [{"percentage": 50}]})
    assert both.json()["errors"]["canary"] == [
        "Give either a canary group or steps, not both (the first step is the canary)."
    ]
    last = post(
        operator_api,
        {**{k: v for k, v in BODY.items() if k != "canary"}, "steps": [{"percentage": 100, "approval": True}]},
    )
    assert "nothing after it to approve" in last.json()["errors"]["steps[0].approval"][0]


def test_an_unknown_instance_id_is_named_by_its_path(fleet, operator_api):
    response = post(operator_api, {**BODY, "canary": {"instances": [999999]}})
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["canary.instances"]


def test_an_interval_the_scheduler_cannot_honour_is_refused_on_check_interval(fleet, operator_api):
    now = timezone.now()
    Instance.objects.bulk_create(
        [
            Instance(
                name=f"bulk-{n:04d}", address=f"127.0.0.1:{1000 + n}", status=InstanceStatus.ONLINE, last_seen_at=now
            )
            for n in range(600)
        ]
    )
    response = post(operator_api, {**BODY, "check_interval": 1, "max_duration": 60})
    assert_status(response, 400)
    (message,) = response.json()["errors"]["check_interval"]
    assert message.startswith("A round over 603 instances can take up to")
    assert "Choose an interval of at least 2 s." in message


def test_a_second_deployment_changing_the_same_app_is_409_naming_the_running_one(fleet, operator_api):
    first = post(operator_api, {**BODY, "name": "first"})
    assert_status(first, 201)
    second = post(operator_api, BODY)
    assert_status(second, 409)
    assert second.json()["error"] == "conflict"
    assert second.json()["running_deployment"]["id"] == first.json()["id"]
    assert "first (#" in second.json()["message"]


def test_nul_bytes_and_wrong_types_are_refused_not_stored(fleet, operator_api):
    response = post(operator_api, {**BODY, "name": "x\u0000y"})
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["name"]
    response = post(operator_api, {**BODY, "check_interval": "soon", "success_threshold": [1]})
    assert_status(response, 400)
    assert set(response.json()["errors"]) == {"check_interval", "success_threshold"}
    assert not CanaryDeployment.objects.exists()


# --- Every poll in the API -------------------------------------------------------------------------


def evaluated(operator_user, rounds=2, then=None):
    deployment = start(operator_user, percentage=66, consecutive_healthy=3, max_duration=30)
    if then:
        then()
    agent_finishes(canary_runs(deployment))
    from canary.services import canary_advance

    canary_advance(deployment_id=deployment.pk)
    now = timezone.now()
    for n in range(rounds):
        canary_advance(deployment_id=deployment.pk, now=now + timezone.timedelta(seconds=n + 0.01))
    return deployment


def test_the_status_keeps_its_summary_and_links_to_every_poll(fleet, operator_user, viewer_api):
    deployment = evaluated(operator_user)
    data = viewer_api.get(f"/api/fleet/canary/{deployment.pk}").json()
    assert data["health"]["poll_count"] == 4
    assert data["polls"] == f"http://testserver/api/fleet/canary/{deployment.pk}/polls"
    polls = viewer_api.get(data["polls"]).json()
    assert polls["count"] == 4
    newest = polls["results"][0]
    assert set(newest) >= {
        "time",
        "instance",
        "instance_id",
        "url",
        "status_code",
        "error",
        "latency_ms",
        "verdict",
        "round",
    }
    assert (newest["round"], newest["status_code"], newest["verdict"], newest["consecutive"]) == (2, 200, "healthy", 2)
    assert newest["url"].startswith("http://127.0.0.1:") and newest["url"].endswith("/health")


def test_polls_filter_by_instance_and_round_and_page(fleet, operator_user, viewer_api):
    deployment = evaluated(operator_user, then=lambda: setattr(fleet[1].server, "mode", "hang"))
    url = f"/api/fleet/canary/{deployment.pk}/polls"
    mine = viewer_api.get(url, {"instance": fleet[1].pk}).json()["results"]
    assert [p["instance"] for p in mine] == ["web-2", "web-2"]
    assert mine[0]["status_code"] is None and mine[0]["error"] == "timed out after 0.5 s"
    assert mine[0]["verdict"] == "unhealthy"
    first_round = viewer_api.get(url, {"round": 1}).json()["results"]
    assert sorted(p["instance"] for p in first_round) == ["web-1", "web-2"]
    page = viewer_api.get(url, {"page_size": 1, "page": 2}).json()
    assert page["count"] == 4 and len(page["results"]) == 1 and page["next"] and page["previous"]
    bad = viewer_api.get(url, {"round": "99999999999"})
    assert_status(bad, 400)
    assert list(bad.json()["errors"]) == ["round"]
    assert_status(viewer_api.get("/api/fleet/canary/999999/polls"), 404)


def test_a_missing_canary_group_says_what_shape_to_send(fleet, operator_api):
    """A client that sends the percentage beside the change (a guess from "choose a percentage or
    specific instances") is told where it goes, not only that something is missing."""
    body = {k: v for k, v in BODY.items() if k != "canary"}
    response = post(operator_api, {**body, "percentage": 20})
    assert_status(response, 400)
    (message,) = response.json()["errors"]["canary"]
    assert '"canary": {"percentage": 1–100}' in message and '"steps"' in message
