"""The fleet REST API: instances, groups, tags, registration tokens, commands, summary, license, roles."""

import pytest
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from common.models import AuditEntry
from fleet import services
from fleet.api.mixins import LicensedFeatureMixin
from fleet.choices import CommandType, RunStatus
from fleet.models import Command, Group, Instance, License, RegistrationToken
from tests.base import api_key_for, assert_status

from .helpers import make_instance


@pytest.fixture
def fleet(db):
    return [
        make_instance("web-01", groups=["web"], tags=["env=production", "role=web"]),
        make_instance("web-02", groups=["web"], tags=["env=staging"], status="offline"),
        make_instance("db-01", groups=["db"], tags=["env=production"]),
    ]


# --- roles -----------------------------------------------------------------------------------------


def test_the_api_needs_authentication(db):
    for path in ("/api/fleet/instances", "/api/fleet/commands", "/api/fleet/summary", "/api/license", "/api/users"):
        assert_status(APIClient().get(path), 401)


def test_a_deactivated_users_token_is_refused(outsider_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(outsider_user)}")
    assert client.get("/api/fleet/instances").status_code in (401, 403)


def test_a_viewer_reads_but_cannot_send_commands(fleet, viewer_api):
    assert_status(viewer_api.get("/api/fleet/instances"), 200)
    response = viewer_api.post(
        "/api/fleet/commands",
        {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "all"}},
        format="json",
    )
    assert_status(response, 403)
    assert not Command.objects.exists()


def test_an_operator_sends_commands_but_cannot_administer(fleet, operator_api):
    response = operator_api.post(
        "/api/fleet/commands",
        {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "all"}},
        format="json",
    )
    assert_status(response, 201)
    assert_status(operator_api.post("/api/fleet/groups", {"name": "edge"}, format="json"), 403)
    assert_status(operator_api.post("/api/fleet/registration-tokens", {"name": "t"}, format="json"), 403)
    assert_status(
        operator_api.patch(f"/api/fleet/instances/{fleet[0].pk}", {"address": "1.2.3.4:80"}, format="json"), 403
    )
    assert_status(operator_api.delete(f"/api/fleet/instances/{fleet[0].pk}"), 403)
    assert_status(operator_api.get("/api/users"), 403)
    assert_status(operator_api.post("/api/license", {"license": "x"}, format="json"), 403)


# --- instances -------------------------------------------------------------------------------------


def test_instances_filter_by_status_group_tag_and_search(fleet, viewer_api):
    def names(query):
        response = viewer_api.get(f"/api/fleet/instances?{query}")
        assert_status(response, 200)
        return sorted(i["name"] for i in response.json()["results"])

    web = Group.objects.get(name="web")
    assert names("") == ["db-01", "web-01", "web-02"]
    assert names("status=offline") == ["web-02"]
    assert names(f"group={web.pk}") == ["web-01", "web-02"]
    assert names("tag=env=production") == ["db-01", "web-01"]
    assert names("tag=env=production,role=web") == ["web-01"]
    assert names("q=db") == ["db-01"]


def test_the_instance_list_costs_the_same_queries_for_more_instances(fleet, viewer_api, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        viewer_api.get("/api/fleet/instances")
    for n in range(10):
        make_instance(f"more-{n}", groups=["web"], tags=["env=production"])
    with django_assert_max_num_queries(6):
        assert viewer_api.get("/api/fleet/instances").json()["count"] == 13


def test_instance_detail_shows_the_reported_state(fleet, viewer_api):
    body = viewer_api.get(f"/api/fleet/instances/{fleet[0].pk}").json()
    assert body["groups"] == ["web"]
    assert body["tags"] == ["env=production", "role=web"]
    assert body["apps"][0] == {"name": "monitoring-agent", "version": "2.3.1", "running": True}
    assert body["settings"]["firewall.enabled"] is True
    assert "agent_secret_hash" not in body and "agent_key_id" not in body


def test_an_admin_changes_address_groups_and_tags_and_it_is_audited(fleet, admin_api):
    Group.objects.create(name="edge")
    response = admin_api.patch(
        f"/api/fleet/instances/{fleet[0].pk}",
        {"address": "10.0.0.9:8080", "groups": ["edge", "web"], "tags": ["env=staging"]},
        format="json",
    )
    assert_status(response, 200)
    assert response.json()["groups"] == ["edge", "web"]
    assert response.json()["tags"] == ["env=staging"]
    assert response.json()["address"] == "10.0.0.9:8080"
    entry = AuditEntry.objects.get(action="instance.update")
    assert entry.actor_label == "alice"


def test_a_bad_tag_or_unknown_group_is_refused_and_nothing_changes(fleet, admin_api):
    response = admin_api.patch(
        f"/api/fleet/instances/{fleet[0].pk}", {"tags": ["production"], "address": "x:1"}, format="json"
    )
    assert_status(response, 400)
    assert "key=value" in response.json()["message"]
    response = admin_api.patch(f"/api/fleet/instances/{fleet[0].pk}", {"groups": ["nope"]}, format="json")
    assert_status(response, 400)
    fleet[0].refresh_from_db()
    assert fleet[0].address == "127.0.0.1:9"


def test_an_admin_deletes_an_instance(fleet, admin_api):
    assert_status(admin_api.delete(f"/api/fleet/instances/{fleet[0].pk}"), 204)
    assert not Instance.objects.filter(pk=fleet[0].pk).exists()
    assert AuditEntry.objects.filter(action="instance.delete").exists()


# --- groups and tags ---------------------------------------------------------------------------------


def test_groups_crud(fleet, admin_api):
    response = admin_api.post("/api/fleet/groups", {"name": "edge", "description": "CDN"}, format="json")
    assert_status(response, 201)
    pk = response.json()["id"]
    assert_status(admin_api.post("/api/fleet/groups", {"name": "edge"}, format="json"), 400)
    assert_status(admin_api.patch(f"/api/fleet/groups/{pk}", {"name": "edge-eu"}, format="json"), 200)
    listed = {g["name"]: g["instance_count"] for g in admin_api.get("/api/fleet/groups").json()["results"]}
    assert listed == {"db": 1, "edge-eu": 0, "web": 2}
    assert_status(admin_api.delete(f"/api/fleet/groups/{pk}"), 204)
    assert list(
        AuditEntry.objects.filter(action__startswith="group.").values_list("action", flat=True).order_by("id")
    ) == [
        "group.create",
        "group.update",
        "group.delete",
    ]


def test_tags_list_with_counts(fleet, viewer_api):
    tags = {(t["key"], t["value"]): t["instance_count"] for t in viewer_api.get("/api/fleet/tags").json()["results"]}
    assert tags == {("env", "production"): 2, ("env", "staging"): 1, ("role", "web"): 1}


# --- registration tokens --------------------------------------------------------------------------------


def test_a_token_is_shown_once_then_never_again(db, admin_api):
    response = admin_api.post("/api/fleet/registration-tokens", {"name": "rack 4", "max_uses": 1}, format="json")
    assert_status(response, 201)
    plaintext = response.json()["token"]
    assert plaintext.startswith("reg_")
    assert response.json()["one_time"] is True
    pk = response.json()["id"]
    assert plaintext not in str(admin_api.get(f"/api/fleet/registration-tokens/{pk}").content)
    assert plaintext not in str(admin_api.get("/api/fleet/registration-tokens").content)
    assert plaintext.split("_", 2)[2] not in RegistrationToken.objects.get(pk=pk).secret_hash


def test_token_detail_lists_accepted_and_rejected_attempts(db, admin_api):
    body = admin_api.post("/api/fleet/registration-tokens", {"name": "t", "max_uses": 1}, format="json").json()
    APIClient().post(
        "/api/agent/register", {"token": body["token"], "name": "a", "address": "127.0.0.1:1"}, format="json"
    )
    APIClient().post("/api/agent/register", {"token": body["token"], "name": "b"}, format="json")
    detail = admin_api.get(f"/api/fleet/registration-tokens/{body['id']}").json()
    assert detail["status"] == "exhausted"
    assert [(u["instance"], u["accepted"]) for u in detail["uses"]] == [(None, False), ("a", True)]
    assert "usage limit" in detail["uses"][0]["reason"]


def test_revoking_a_token_through_the_api(db, admin_api):
    body = admin_api.post("/api/fleet/registration-tokens", {"name": "t"}, format="json").json()
    response = admin_api.post(f"/api/fleet/registration-tokens/{body['id']}/revoke")
    assert_status(response, 200)
    assert response.json()["status"] == "revoked"
    assert_status(admin_api.post(f"/api/fleet/registration-tokens/{body['id']}/revoke"), 400)


def test_a_token_with_a_past_expiry_or_zero_uses_is_refused(db, admin_api):
    response = admin_api.post(
        "/api/fleet/registration-tokens", {"name": "t", "expires_at": "2001-01-01T00:00:00Z"}, format="json"
    )
    assert_status(response, 400)
    assert "future" in response.json()["message"]
    assert_status(admin_api.post("/api/fleet/registration-tokens", {"name": "t", "max_uses": 0}, format="json"), 400)


# --- commands ----------------------------------------------------------------------------------------------


def test_sending_a_command_to_a_group_creates_runs_and_is_listed_with_counts(fleet, operator_api):
    response = operator_api.post(
        "/api/fleet/commands",
        {
            "kind": "update_app",
            "params": {"app": "nginx", "version": "1.26.2"},
            "scope": {"kind": "groups", "groups": ["web"]},
        },
        format="json",
    )
    assert_status(response, 201)
    body = response.json()
    assert body["scope"] == {"kind": "groups", "groups": ["web"]}
    assert body["runs"] == {"total": 2, "pending": 2, "running": 0, "completed": 0, "failed": 0}
    assert sorted(r["instance_name"] for r in body["run_list"]) == ["web-01", "web-02"]
    assert body["created_by"] == "oscar"
    listed = operator_api.get("/api/fleet/commands?kind=update_app").json()["results"]
    assert [c["id"] for c in listed] == [body["id"]]
    assert operator_api.get("/api/fleet/commands?kind=set_config").json()["results"] == []


def test_sending_a_command_with_bad_input_explains_why(fleet, operator_api):
    cases = [
        ({"kind": "update_app", "params": {"app": "nginx"}, "scope": {"kind": "all"}}, "'version' must be a version"),
        (
            {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "tags", "tags": ["env=nowhere"]}},
            "matches no instances",
        ),
        ({"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "tags", "tags": ["nope"]}}, "key=value"),
        (
            {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "groups", "groups": []}},
            "at least one group",
        ),
        ({"kind": "launch", "params": {}, "scope": {"kind": "all"}}, "kind"),
    ]
    for payload, words in cases:
        response = operator_api.post("/api/fleet/commands", payload, format="json")
        assert_status(response, 400)
        assert words in response.json()["message"], response.json()
    assert not Command.objects.exists()


def test_command_runs_filter_by_status_and_instance(fleet, operator_api):
    operator_api.post(
        "/api/fleet/commands",
        {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "all"}},
        format="json",
    )
    services.agent_commands_fetch(instance=fleet[0])
    running = operator_api.get("/api/fleet/command-runs?status=running").json()["results"]
    assert [r["instance_name"] for r in running] == ["web-01"]
    mine = operator_api.get(f"/api/fleet/command-runs?instance={fleet[2].pk}").json()["results"]
    assert [(r["instance_name"], r["status"], r["kind"]) for r in mine] == [("db-01", "pending", "restart_app")]


def test_an_operator_reverts_a_completed_run(fleet, operator_api):
    command = operator_api.post(
        "/api/fleet/commands",
        {
            "kind": "stop_app",
            "params": {"app": "monitoring-agent"},
            "scope": {"kind": "instances", "instances": [fleet[0].pk]},
        },
        format="json",
    ).json()
    run_id = command["run_list"][0]["id"]
    assert_status(operator_api.post(f"/api/fleet/command-runs/{run_id}/revert"), 409)
    services.agent_commands_fetch(instance=fleet[0])
    services.command_run_report(instance=fleet[0], run_id=run_id, status=RunStatus.COMPLETED)
    response = operator_api.post(f"/api/fleet/command-runs/{run_id}/revert")
    assert_status(response, 201)
    assert (response.json()["kind"], response.json()["params"]) == (CommandType.START_APP, {"app": "monitoring-agent"})
    assert response.json()["inverse_of"] == command["id"]


# --- summary, health, license --------------------------------------------------------------------------------


def test_summary_and_health(fleet, viewer_api):
    assert viewer_api.get("/api/fleet/summary").json() == {
        "total": 3,
        "online": 2,
        "offline": 1,
        "pending": 0,
        "queue_pending": 0,
        "queue_running": 0,
    }
    health = viewer_api.get("/api/fleet/health").json()
    assert health["status"] == "degraded"
    assert [i["name"] for i in health["offline_instances"]] == ["web-02"]


def test_license_status_and_upload(db, admin_api, viewer_api, license_issuer):
    assert viewer_api.get("/api/license").json()["plan"] == "community"
    response = admin_api.post("/api/license", {"license": license_issuer.issue("business")}, format="json")
    assert_status(response, 201)
    body = viewer_api.get("/api/license").json()
    assert (body["plan"], body["state"], body["customer"]) == ("business", "valid", "Test Co")
    assert body["features"] == {"canary_deployments": True, "gitops": False}


def test_a_tampered_license_upload_changes_nothing(db, admin_api, license_issuer):
    text = license_issuer.issue("enterprise")
    response = admin_api.post("/api/license", {"license": "x" + text}, format="json")
    assert_status(response, 400)
    assert "signature" in response.json()["message"]
    assert not License.objects.exists()
    assert_status(admin_api.post("/api/license", {"license": "not a license"}, format="json"), 400)


class GitopsOnlyView(LicensedFeatureMixin, APIView):
    """A stand-in for any gated endpoint."""

    license_feature = "gitops"

    def get(self, request):
        return Response({"ok": True})


def test_a_feature_the_plan_lacks_answers_402_with_the_documented_body(install_license, admin_user):
    install_license("business")
    request = APIRequestFactory().get("/api/governance/gitops")
    force_authenticate(request, user=admin_user)
    response = GitopsOnlyView.as_view()(request)
    assert response.status_code == 402
    assert response.data == {
        "error": "upgrade_required",
        "feature": "gitops",
        "current_plan": "business",
        "required_plan": "enterprise",
        "message": "The 'gitops' feature requires the Enterprise plan or higher; the current license is Business.",
        "errors": {},
    }


def test_a_gated_view_checks_the_role_before_the_license(db, license_issuer):
    request = APIRequestFactory().get("/api/governance/gitops")
    assert GitopsOnlyView.as_view()(request).status_code == 401


def test_the_schema_is_served(admin_api):
    response = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert_status(response, 200)
    paths = response.json()["paths"]
    for path in (
        "/api/fleet/instances",
        "/api/fleet/commands",
        "/api/fleet/registration-tokens/{id}/revoke",
        "/api/license",
    ):
        assert path in paths
