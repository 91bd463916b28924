"""Issue #11: policy rules parsed strictly, every problem at once, in the one error envelope."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from fleet.scopes import Scope
from governance import evaluators
from governance.models import Policy
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db


def errors_of(policy_type, rules) -> dict:
    with pytest.raises(evaluators.RuleError) as caught:
        evaluators.validate_rules(policy_type, rules)
    return caught.value.errors


def test_unknown_keys_are_refused_and_named_by_their_path():
    errors = errors_of(
        "required_apps", {"apps": [{"name": "agent"}, {"name": "nginx", "min_versoin": "1.2"}], "foo": 1}
    )
    assert set(errors) == {"apps[1].min_versoin", "foo"}
    assert "Unknown key 'min_versoin'" in errors["apps[1].min_versoin"][0]
    assert "min_version" in errors["apps[1].min_versoin"][0]  # says what it could have been
    assert set(errors_of("baseline", {"os_versoin": "24.04", "settings": {"a.b": 1}})) == {"os_versoin"}
    assert set(errors_of("blocked_apps", {"apps": [{"pattern": "x", "version": "1"}]})) == {"apps[0].version"}
    assert set(errors_of("update_rules", {"apps": [{"name": "x", "deadline_hours": 4, "hours": 4}]})) == {
        "apps[0].hours"
    }


def test_versions_must_parse_everywhere():
    assert set(errors_of("required_apps", {"apps": [{"name": "nginx", "min_version": "banana"}]})) == {
        "apps[0].min_version"
    }
    assert set(errors_of("baseline", {"os_version": "banana"})) == {"os_version"}
    assert set(errors_of("blocked_apps", {"apps": [{"pattern": "db", "below_version": "two"}]})) == {
        "apps[0].below_version"
    }


def test_every_problem_is_reported_at_once():
    errors = errors_of(
        "required_apps",
        {"apps": [{"name": "Bad Name"}, {"name": "ok", "min_version": "banana", "running": "yes"}, "nginx"]},
    )
    assert set(errors) == {"apps[0].name", "apps[1].min_version", "apps[1].running", "apps[2]"}


def test_the_api_answers_the_envelope_with_every_problem_under_the_requests_own_paths(admin_api):
    body = {
        "name": "",
        "policy_type": "required_apps",
        "rules": {"apps": [{"name": "agent"}, {"name": "nginx", "min_versoin": "1.2"}], "foo": 1},
    }
    response = admin_api.post("/api/governance/policies", body, format="json")
    assert_status(response, 400)
    data = response.json()
    assert data["error"] == "invalid"
    assert {"rules.apps[1].min_versoin", "rules.foo"} <= set(data["errors"])
    assert "rules.apps[1].min_versoin" in data["message"] and "rules.foo" in data["message"]
    assert not Policy.objects.exists()


def test_nonsense_versions_are_refused_by_the_api(admin_api):
    for policy_type, rules, path in (
        ("required_apps", {"apps": [{"name": "nginx", "min_version": "banana"}]}, "rules.apps[0].min_version"),
        ("baseline", {"os_version": "banana"}, "rules.os_version"),
    ):
        response = admin_api.post(
            "/api/governance/policies", {"name": "x", "policy_type": policy_type, "rules": rules}, format="json"
        )
        assert_status(response, 400)
        assert list(response.json()["errors"]) == [path]


def test_a_policy_conflict_uses_the_same_envelope(admin_api):
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnet*"}]})
    body = {"name": "Console", "policy_type": "required_apps", "rules": {"apps": [{"name": "telnetd"}]}}
    response = admin_api.post("/api/governance/policies", body, format="json")
    assert_status(response, 400)
    data = response.json()
    assert data["error"] == "policy_conflict" and "No telnet" in data["message"]
    assert [m for m in data["errors"]["rules"] if "telnetd" in m]


def test_waiver_errors_come_all_at_once_in_the_envelope(admin_api):
    policy = make_policy()
    body = {
        "policy": policy.pk,
        "rule_key": "app:nope",
        "justification": "short",
        "expires_at": (timezone.now() - timedelta(days=1)).isoformat(),
        "scope": {"kind": "all"},
    }
    response = admin_api.post("/api/governance/exceptions", body, format="json")
    assert_status(response, 400)
    data = response.json()
    assert data["error"] == "invalid"
    assert {"justification", "expires_at"} <= set(data["errors"]), data


def test_the_html_form_shows_the_same_messages_on_the_field(admin_client):
    response = admin_client.post(
        reverse("governance:policy_create", args=["required_apps"]),
        {"name": "Agents", "apps": "agent\nnginx >= banana", "scope_kind": "all"},
    )
    assert response.status_code == 200
    form = response.context["form"]
    # The editor checks each line alone and names it: the API's message, after the line.
    assert [
        e
        for e in form.errors["apps"]
        if e.startswith("Line 2 ('nginx >= banana'):") and "'banana' is not a version" in e
    ]
    response = admin_client.post(
        reverse("governance:policy_create", args=["baseline"]),
        {"name": "Base", "os_version": "banana", "os_match": "minimum", "scope_kind": "all"},
    )
    assert "is not a version" in response.context["form"].errors["os_version"][0]
    assert not Policy.objects.exists()


def test_conflicts_between_scopes_that_do_not_touch_still_pass(make_instance, group):
    make_policy(
        name="No telnet",
        policy_type="blocked_apps",
        rules={"apps": [{"pattern": "telnet*"}]},
        scope=Scope(kind="groups", group_ids=(group.pk,)),
    )
    other = make_instance()
    make_policy(
        name="Console", rules={"apps": [{"name": "telnetd"}]}, scope=Scope(kind="instances", instance_ids=(other.pk,))
    )


@pytest.mark.parametrize("hours", ["²", "٤٨", "1e3", True])
def test_a_deadline_that_is_not_plain_digits_is_refused_not_a_500(hours):
    from governance import evaluators

    with pytest.raises(evaluators.RuleError) as exc:
        evaluators.validate_rules("update_rules", {"apps": [{"name": "nginx", "deadline_hours": hours}]})
    assert "whole number of hours" in str(exc.value)
