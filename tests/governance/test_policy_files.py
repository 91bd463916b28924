"""Policies as YAML: export → import round trip, dry run vs apply, atomicity with file:line errors, roles."""

import io
import zipfile

import pytest
import yaml

from fleet.models import Group
from fleet.scopes import Scope
from governance.models import Policy, PolicyVersion
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db

AGENT = """\
name: Require agent
description: every server runs it
type: required_apps
enabled: true
mode: audit
scope:
  kind: groups
  groups: [web]
rules:
  apps:
    - name: monitoring-agent
      min_version: "1.2"
"""


@pytest.fixture
def fleet_policies(db, group):
    make_policy(name="Need agent", rules={"apps": [{"name": "monitoring-agent", "min_version": "1.2"}]})
    make_policy(
        name="Block telnet",
        policy_type="blocked_apps",
        rules={"apps": [{"pattern": "telnet*"}]},
        scope=Scope(kind="groups", group_ids=(group.pk,)),
    )
    make_policy(name="Baseline", policy_type="baseline", rules={"os_version": "24.04", "settings": {"ssh.root": False}})
    make_policy(
        name="Prod updates",
        policy_type="update_rules",
        rules={"os_deadline_hours": 48},
        scope=Scope(kind="tags", tags=("env=production",)),
        enabled=False,
    )


def _import(api, body, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return api.post(f"/api/governance/policies/import?{query}", body, format="json")


def test_export_then_import_is_a_no_op(admin_api, fleet_policies):
    exported = admin_api.get("/api/governance/policies/export")
    assert_status(exported, 200)
    text = exported.content.decode()
    assert [p["name"] for p in yaml.safe_load(text)["policies"]] == [
        "Baseline",
        "Block telnet",
        "Need agent",
        "Prod updates",
    ]
    assert "groups:\n    - web" in text  # scope by name, not id

    versions = PolicyVersion.objects.count()
    response = _import(admin_api, {"yaml": text}, apply="true", prune="true")
    assert_status(response, 200)
    assert response.data["created"] == [] and response.data["changed"] == [] and response.data["removed"] == []
    assert response.data["unchanged"] == 4
    assert PolicyVersion.objects.count() == versions


def test_the_zip_export_round_trips_too(admin_api, fleet_policies):
    exported = admin_api.get("/api/governance/policies/export?format=zip")
    assert_status(exported, 200)
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert "policies/need-agent.yaml" in names and len(names) == 4
    response = admin_api.post("/api/governance/policies/import", exported.content, content_type="application/zip")
    assert_status(response, 200)
    assert response.data["unchanged"] == 4 and not response.data["applied"]


def test_import_is_a_dry_run_until_apply(admin_api, group):
    make_policy(name="Require agent", rules={"apps": [{"name": "monitoring-agent"}]})
    make_policy(name="Old rule", policy_type="blocked_apps", rules={"apps": [{"pattern": "ftp"}]})
    response = admin_api.post("/api/governance/policies/import", AGENT, content_type="application/yaml")
    assert_status(response, 200)
    assert response.data["applied"] is False
    assert response.data["changed"] == [{"name": "Require agent", "fields": ["description", "scope", "rules"]}]
    assert response.data["removed"] == [] and response.data["missing"] == ["Old rule"]  # not asked to prune
    assert Policy.objects.get(name="Require agent").rules["apps"][0]["min_version"] is None

    response = admin_api.post(
        "/api/governance/policies/import?apply=true&prune=true", AGENT, content_type="application/yaml"
    )
    assert_status(response, 200)
    assert response.data["applied"] is True and response.data["removed"] == ["Old rule"]
    policy = Policy.objects.get(name="Require agent")
    assert policy.rules["apps"][0]["min_version"] == "1.2"
    assert [g.name for g in policy.scope_groups.all()] == ["web"]
    assert not Policy.objects.get(name="Old rule").enabled
    version = policy.versions.order_by("-number").first()
    assert (version.source, version.change, version.number) == ("import", "changed", 2)


def test_one_bad_policy_in_a_zip_of_ten_applies_nothing_and_every_bad_file_is_named_with_its_line(admin_api, group):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(8):
            archive.writestr(f"policies/p{i}.yaml", AGENT.replace("Require agent", f"Policy {i}"))
        archive.writestr("policies/bad-version.yaml", AGENT.replace("Require agent", "Bad").replace('"1.2"', "banana"))
        archive.writestr("policies/bad-group.yaml", AGENT.replace("Require agent", "Bad 2").replace("[web]", "[nope]"))
    response = admin_api.post(
        "/api/governance/policies/import?apply=true", buffer.getvalue(), content_type="application/zip"
    )
    assert_status(response, 400)
    assert response.data["error"] == "invalid_policy_files"
    issues = {(i["file"], i["line"]) for i in response.data["issues"]}
    assert issues == {("policies/bad-version.yaml", 12), ("policies/bad-group.yaml", 8)}
    assert "min_version" in response.data["errors"]["policies/bad-version.yaml"][0]
    assert "no group named 'nope'" in response.data["errors"]["policies/bad-group.yaml"][0]
    assert not Policy.objects.exists()


def test_unknown_keys_are_refused_as_the_api_refuses_them(admin_api):
    text = AGENT.replace("      min_version", "      min_versoin").replace(
        "scope:\n  kind: groups\n  groups: [web]\n", ""
    )
    response = admin_api.post("/api/governance/policies/import", {"yaml": text, "filename": "a.yaml"}, format="json")
    assert_status(response, 400)
    [issue] = response.data["issues"]
    assert issue["file"] == "a.yaml" and issue["line"] == 9 and "min_versoin" in issue["message"]


def test_a_conflict_only_applying_finds_is_reported_by_the_dry_run(admin_api):
    make_policy(name="No agents", policy_type="blocked_apps", rules={"apps": [{"pattern": "monitoring-*"}]})
    text = AGENT.replace("scope:\n  kind: groups\n  groups: [web]\n", "")
    response = admin_api.post("/api/governance/policies/import", {"yaml": text}, format="json")
    assert_status(response, 400)
    assert "No agents" in response.data["message"] and response.data["issues"][0]["line"] == 1
    assert not Policy.objects.filter(name="Require agent").exists()


def test_export_is_for_viewers_and_import_for_admins(viewer_api, operator_api, admin_api, fleet_policies, client):
    assert_status(viewer_api.get("/api/governance/policies/export"), 200)
    assert_status(viewer_api.post("/api/governance/policies/import", {"yaml": AGENT}, format="json"), 403)
    assert_status(operator_api.post("/api/governance/policies/import", {"yaml": AGENT}, format="json"), 403)
    assert_status(client.get("/api/governance/policies/export"), 401)
    assert Group.objects.filter(name="web").exists()
    assert_status(admin_api.post("/api/governance/policies/import", {"nothing": 1}, format="json"), 400)


def test_a_body_over_ten_megabytes_is_refused_in_the_envelope(admin_api):
    response = admin_api.post(
        "/api/governance/policies/import", b"#" * (10 * 1024 * 1024 + 1), content_type="application/yaml"
    )
    assert_status(response, 400)
    assert response.data["message"] == "The body is larger than 10 MB."
    assert not Policy.objects.exists()


def test_a_file_that_is_not_yaml_or_not_a_zip_is_named(admin_api):
    response = admin_api.post("/api/governance/policies/import", b"PK\x03\x04garbage", content_type="application/zip")
    assert_status(response, 400)
    assert response.data["issues"][0]["file"] == "upload.zip" and "not a zip" in response.data["message"]
    response = admin_api.post("/api/governance/policies/import", "name: [unclosed", content_type="application/yaml")
    assert_status(response, 400)
    assert "YAML syntax error" in response.data["issues"][0]["message"]
