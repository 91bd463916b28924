"""A trailing newline is not a valid ending. Python's `$` also matches before a final "\\n", so every
`^…$` validator accepted "nginx\\n", "env=prod\\n" or "1.0\\n" inside JSON fields (which, unlike
CharFields, are not trimmed): a command for app "nginx\\n", a scope tag no instance can carry, a
version no package has. The validators end in `\\Z`; these tests pin that down at the API."""

import re
from pathlib import Path

import pytest
from django.core.cache import cache

from fleet.models import Command, Group
from governance.models import Policy
from tests.base import assert_status
from tests.fleet.helpers import heartbeat_body, register_agent

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["common", "fleet", "governance", "canary", "gitops", "agent/governance_agent"]


def test_no_validator_in_the_source_ends_in_a_dollar():
    """A new `re.compile(r"^…$")` brings the defect back; `\\Z` (or fullmatch) is the ending."""
    offenders = []
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"re\.compile\(r?f?[\"'].*\$[\"']\)", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []


@pytest.mark.django_db
def test_a_command_for_an_app_name_ending_in_a_newline_is_refused(operator_api):
    payload = {"kind": "restart_app", "params": {"app": "nginx\n"}, "scope": {"kind": "all"}}
    response = operator_api.post("/api/fleet/commands", payload, format="json")
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["params.app"], response.json()
    assert not Command.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rules", "scope", "field"),
    [
        ({"apps": [{"name": "nginx\n"}]}, {"kind": "all"}, "rules.apps[0].name"),
        ({"apps": [{"name": "nginx", "min_version": "1.0\n"}]}, {"kind": "all"}, "rules.apps[0].min_version"),
    ],
)
def test_a_policy_with_a_name_version_or_tag_ending_in_a_newline_is_refused(admin_api, rules, scope, field):
    Group.objects.create(name="web")
    body = {"name": "p", "policy_type": "required_apps", "rules": rules, "scope": scope}
    response = admin_api.post("/api/governance/policies", body, format="json")
    assert_status(response, 400)
    assert any(key.startswith(field) for key in response.json()["errors"]), response.json()
    assert not Policy.objects.exists()


@pytest.mark.django_db
def test_a_heartbeat_with_a_version_ending_in_a_newline_is_refused_and_nothing_stored():
    cache.clear()
    instance, client = register_agent("web-01")
    body = heartbeat_body()
    body["apps"] = [{"name": "nginx", "version": "1.26.2\n", "running": True}]
    response = client.post("/api/agent/heartbeat", body, format="json")
    assert_status(response, 400)
    assert any(key.startswith("apps[0]") for key in response.json()["errors"]), response.json()
    instance.refresh_from_db()
    assert instance.apps == []  # registered, never reported: the refused heartbeat stored nothing


@pytest.mark.django_db
def test_a_scope_tag_with_a_trailing_newline_is_stored_trimmed_or_refused(admin_api):
    body = {"name": "p", "policy_type": "required_apps", "rules": {"apps": [{"name": "nginx"}]}}
    body["scope"] = {"kind": "tags", "tags": ["env=prod\n"]}
    response = admin_api.post("/api/governance/policies", body, format="json")
    assert response.status_code in (201, 400), response.content
    if response.status_code == 201:
        assert list(Policy.objects.get().scope.tags) == ["env=prod"]


@pytest.mark.django_db
def test_a_canary_for_an_app_name_ending_in_a_newline_names_the_parameter(admin_api, enterprise_license):
    body = {
        "change": {"kind": "update_app", "params": {"app": "nginx\n", "version": "1.2"}},
        "canary": {"percentage": 10},
    }
    response = admin_api.post("/api/fleet/canary", body, format="json")
    assert_status(response, 400)
    assert "change.params.app" in response.json()["errors"], response.json()
