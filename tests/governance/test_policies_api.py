"""Policies, exceptions, violations and compliance over the API: validation, conflicts, preview, roles."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common.models import AuditEntry
from fleet.models import Instance
from fleet.scopes import Scope
from governance import services
from governance.models import Policy, Violation
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db

BLOCK_DB = {
    "name": "Block old db",
    "policy_type": "blocked_apps",
    "rules": {"apps": [{"pattern": "outdated-db", "below_version": "2.0"}]},
}


def test_admin_creates_a_policy_and_its_scope_is_evaluated(admin_api, make_instance):
    web = make_instance(apps=[("outdated-db", "1.4")])
    response = admin_api.post("/api/governance/policies", BLOCK_DB, format="json")
    assert_status(response, 201)
    assert response.data["severity"] == "critical"
    assert response.data["scope"] == {"kind": "all"}
    violation = Violation.objects.get(instance=web)
    assert violation.evidence == "outdated-db 1.4 installed, blocked below 2.0"
    assert AuditEntry.objects.filter(action="policy.create").exists()


def test_bad_rules_get_a_message_that_says_what_is_wrong(admin_api):
    body = {**BLOCK_DB, "rules": {"apps": [{"pattern": "db", "min_version": "3", "below_version": "2"}]}}
    response = admin_api.post("/api/governance/policies", body, format="json")
    assert_status(response, 400)
    assert "range from 3 below 2 is empty" in response.data["message"]
    assert not Policy.objects.exists()


def test_a_policy_requiring_an_app_another_blocks_over_overlapping_scopes_is_refused_naming_both(
    admin_api, group, make_instance
):
    make_instance(groups=[group])
    make_policy(name="No telnet anywhere", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnet*"}]})
    body = {
        "name": "Console access",
        "policy_type": "required_apps",
        "rules": {"apps": [{"name": "telnetd"}]},
        "scope": {"kind": "groups", "groups": ["web"]},
    }
    response = admin_api.post("/api/governance/policies", body, format="json")
    assert_status(response, 400)
    assert "Console access" in response.data["message"] and "No telnet anywhere" in response.data["message"]
    assert not Policy.objects.filter(name="Console access").exists()


def test_conflicts_over_scopes_that_do_not_overlap_are_allowed(group, make_instance):
    make_instance(groups=[group], tags=["env=dev"])
    make_instance(tags=["env=production"])
    make_policy(
        name="No telnet in prod",
        policy_type="blocked_apps",
        rules={"apps": [{"pattern": "telnetd"}]},
        scope=Scope(kind="tags", tags=("env=production",)),
    )
    make_policy(
        name="Telnet for web", rules={"apps": [{"name": "telnetd"}]}, scope=Scope(kind="groups", group_ids=(group.pk,))
    )
    with pytest.raises(services.ApplicationError, match="No telnet in prod"):
        make_policy(
            name="Telnet in prod",
            rules={"apps": [{"name": "telnetd"}]},
            scope=Scope(kind="tags", tags=("env=production",)),
        )


def test_preview_lists_instances_in_scope_and_who_would_violate_without_saving(admin_api, make_instance):
    make_instance("db-1", apps=[("outdated-db", "1.4")], tags=["env=production"])
    make_instance("db-2", apps=[("outdated-db", "2.1")], tags=["env=production"])
    make_instance("db-3", apps=[("outdated-db", "1.0")], tags=["env=dev"])
    body = {
        "policy_type": "blocked_apps",
        "rules": BLOCK_DB["rules"],
        "scope": {"kind": "tags", "tags": ["env=production"]},
    }
    response = admin_api.post("/api/governance/policies/preview", body, format="json")
    assert_status(response, 200)
    assert (response.data["in_scope"], response.data["violating"], response.data["compliant"]) == (2, 1, 1)
    assert response.data["instances"][0]["name"] == "db-1"
    assert not Policy.objects.exists() and not Violation.objects.exists()


def test_policy_type_cannot_change_on_update(admin_api):
    policy = make_policy()
    response = admin_api.patch(f"/api/governance/policies/{policy.pk}", {"policy_type": "baseline"}, format="json")
    assert_status(response, 400)


def test_updating_a_policy_scope_resolves_violations_outside_the_new_scope(admin_api, group, make_instance):
    inside = make_instance(apps=[], groups=[group])
    outside = make_instance(apps=[])
    policy = make_policy()
    assert Violation.objects.filter(status="open").count() == 2
    response = admin_api.patch(
        f"/api/governance/policies/{policy.pk}", {"scope": {"kind": "groups", "groups": ["web"]}}, format="json"
    )
    assert_status(response, 200)
    assert Violation.objects.get(instance=outside).status == "resolved"
    assert Violation.objects.get(instance=inside).status == "open"


def test_disable_and_enable_actions(admin_api, make_instance):
    web = make_instance(apps=[])
    policy = make_policy()
    assert_status(admin_api.post(f"/api/governance/policies/{policy.pk}/disable"), 200)
    assert Violation.objects.get(instance=web).status == "resolved"
    assert_status(admin_api.post(f"/api/governance/policies/{policy.pk}/enable"), 200)
    assert Violation.objects.filter(instance=web, status="open").count() == 1


@pytest.mark.parametrize("client_name", ["viewer_api", "operator_api"])
def test_only_admins_write_policies_and_exceptions_but_everyone_reads(request, client_name, make_instance):
    api = request.getfixturevalue(client_name)
    policy = make_policy()
    assert_status(api.get("/api/governance/policies"), 200)
    assert_status(api.get("/api/governance/violations"), 200)
    assert_status(api.get("/api/governance/compliance"), 200)
    assert_status(api.post("/api/governance/policies", BLOCK_DB, format="json"), 403)
    assert_status(api.delete(f"/api/governance/policies/{policy.pk}"), 403)
    assert_status(api.post(f"/api/governance/policies/{policy.pk}/disable"), 403)
    body = {
        "policy": policy.pk,
        "scope": {"kind": "all"},
        "justification": "because of reasons",
        "expires_at": (timezone.now() + timedelta(days=1)).isoformat(),
    }
    assert_status(api.post("/api/governance/exceptions", body, format="json"), 403)


def test_anonymous_requests_are_refused(client):
    assert client.get("/api/governance/policies").status_code == 401


def test_violations_filter_by_severity_status_and_tag(admin_api, make_instance):
    make_instance("prod", apps=[("telnetd", "1")], tags=["env=production"])
    make_instance("dev", apps=[("telnetd", "1")], tags=["env=dev"])
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    make_policy()
    response = admin_api.get(
        "/api/governance/violations", {"severity": "critical", "status": "open", "tag": "env=production"}
    )
    assert_status(response, 200)
    assert [(v["instance_name"], v["severity"]) for v in response.data["results"]] == [("prod", "critical")]
    detail = admin_api.get(f"/api/governance/violations/{response.data['results'][0]['id']}")
    assert detail.data["evidence"] == "telnetd 1 installed, blocked"


def test_exceptions_need_a_justification_and_a_future_expiry(admin_api, make_instance):
    web = make_instance(apps=[])
    policy = make_policy()
    base = {"policy": policy.pk, "scope": {"kind": "instances", "instances": [web.pk]}}
    no_reason = admin_api.post(
        "/api/governance/exceptions",
        {**base, "justification": "", "expires_at": (timezone.now() + timedelta(days=1)).isoformat()},
        format="json",
    )
    assert_status(no_reason, 400)
    past = admin_api.post(
        "/api/governance/exceptions",
        {
            **base,
            "justification": "vendor replaces the agent",
            "expires_at": (timezone.now() - timedelta(days=1)).isoformat(),
        },
        format="json",
    )
    assert_status(past, 400)
    assert "future" in past.data["message"]
    bad_rule = admin_api.post(
        "/api/governance/exceptions",
        {
            **base,
            "rule_key": "app:nginx",
            "justification": "vendor replaces the agent",
            "expires_at": (timezone.now() + timedelta(days=1)).isoformat(),
        },
        format="json",
    )
    assert_status(bad_rule, 400)
    assert "app:monitoring-agent" in bad_rule.data["message"]
    ok = admin_api.post(
        "/api/governance/exceptions",
        {
            **base,
            "justification": "vendor replaces the agent",
            "expires_at": (timezone.now() + timedelta(days=1)).isoformat(),
        },
        format="json",
    )
    assert_status(ok, 201)
    assert Violation.objects.get(instance=web).status == "exempted"
    revoked = admin_api.post(f"/api/governance/exceptions/{ok.data['id']}/revoke")
    assert_status(revoked, 200)
    assert revoked.data["status"] == "revoked"
    assert Violation.objects.get(instance=web).status == "open"
    assert AuditEntry.objects.filter(action__in=["policy_exception.create", "policy_exception.revoke"]).count() == 2


def test_compliance_endpoints_give_fleet_instance_policy_group_and_history(admin_api, make_instance, group):
    good = make_instance(apps=[("monitoring-agent", "1")], groups=[group])
    make_instance(apps=[], groups=[group])
    policy = make_policy()
    services.compliance_snapshot_take()
    fleet = admin_api.get("/api/governance/compliance").data
    assert (fleet["average"], fleet["violations"]["warning"]) == (50.0, 1)
    instances = admin_api.get("/api/governance/compliance/instances").data["results"]
    assert [i["score"] for i in instances] == [0.0, 100.0]
    one = admin_api.get(f"/api/governance/compliance/instances/{good.pk}").data
    assert one["score"] == 100.0
    on_day = admin_api.get(
        f"/api/governance/compliance/instances/{good.pk}", {"date": timezone.localdate().isoformat()}
    ).data
    assert on_day["compliant"] is True
    [row] = admin_api.get("/api/governance/compliance/policies").data
    assert (row["policy_id"], row["score"]) == (policy.pk, 50.0)
    [g] = admin_api.get("/api/governance/compliance/groups").data
    assert (g["group"], g["average"]) == ("web", 50.0)
    history = admin_api.get("/api/governance/compliance/history", {"kind": "fleet"}).data
    assert [h["score"] for h in history] == [50.0]


def test_the_openapi_schema_lists_the_governance_endpoints(admin_api):
    response = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    paths = response.json()["paths"] if response["Content-Type"].startswith("application/json") else {}
    if not paths:
        import yaml

        paths = yaml.safe_load(response.content)["paths"]
    for path in (
        "/api/governance/policies",
        "/api/governance/policies/preview",
        "/api/governance/violations",
        "/api/governance/compliance",
        "/api/governance/exceptions",
    ):
        assert path in paths


def test_a_policy_not_yet_counted_reads_compliance_null_as_its_schema_declares(admin_api):
    from drf_spectacular.generators import SchemaGenerator

    from governance.models import PolicyCompliance
    from tests.fleet.test_api_schema import mismatches

    policy = make_policy()
    PolicyCompliance.objects.filter(policy=policy).delete()  # as between creation and the first count
    schema = SchemaGenerator().get_schema(request=None, public=True)
    body = admin_api.get(f"/api/governance/policies/{policy.pk}").json()
    assert body["compliance"] is None
    declared = schema["paths"]["/api/governance/policies/{id}"]["get"]["responses"]["200"]["content"]
    assert mismatches(body, declared["application/json"]["schema"], schema["components"]["schemas"]) == []


def test_an_instances_compliance_on_a_day_matches_its_declared_schema(admin_api, make_instance):
    from drf_spectacular.generators import SchemaGenerator

    from tests.fleet.test_api_schema import mismatches

    web = make_instance()
    make_policy()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    declared = schema["paths"]["/api/governance/compliance/instances/{instance_id}"]["get"]["responses"]["200"]
    declared = declared["content"]["application/json"]["schema"]
    for query in ("", "?date=2026-01-01"):
        body = admin_api.get(f"/api/governance/compliance/instances/{web.pk}{query}").json()
        assert mismatches(body, declared, schema["components"]["schemas"]) == [], (query, body)
    never = Instance.objects.create(name="never-evaluated")  # no standing yet: evaluated_at is null
    body = admin_api.get(f"/api/governance/compliance/instances/{never.pk}").json()
    assert body["evaluated_at"] is None and body["score"] is None
    assert mismatches(body, declared, schema["components"]["schemas"]) == []
    bad = admin_api.get(f"/api/governance/compliance/instances/{web.pk}?date=banana").json()
    assert bad["errors"] == {"date": ["date must be YYYY-MM-DD."]}
