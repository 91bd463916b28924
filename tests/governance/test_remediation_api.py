"""Enforce mode through the API: settings with strict validation in the error envelope, admin-only changes,
previews, resuming, and each violation's attempts with their runs."""

import pytest

from fleet.choices import RunStatus
from fleet.models import Command
from governance.models import RemediationAttempt, RemediationSettings, Violation
from governance.remediation.rails import remediation_update
from governance.remediation.services import pause, remediate_policy
from tests.base import assert_status

from .conftest import make_policy
from .test_remediation import AGENT, agent_finishes

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy(admin_user, make_instance):
    for _ in range(3):
        make_instance(apps=[])
    return make_policy(admin_user, rules=AGENT)


def url(policy, tail=""):
    return f"/api/governance/policies/{policy.pk}/remediation{tail}"


def test_anyone_reads_the_defaults_of_a_policy_in_audit_mode(viewer_api, policy):
    response = viewer_api.get(url(policy))
    assert_status(response, 200)
    body = response.json()
    assert body["settings"]["mode"] == "audit"
    assert body["settings"]["max_instances"] == 5 and body["settings"]["max_attempts"] == 3
    assert body["status"]["paused"] is False and body["status"]["window_open"] is True


def test_an_admin_switches_to_enforce_with_rails_and_they_are_kept(admin_api, policy):
    data = {
        "mode": "enforce",
        "max_instances": 2,
        "max_percent": 50,
        "window_days": [5, 6],
        "window_start": "22:00",
        "window_end": "04:00",
        "window_timezone": "Europe/Berlin",
    }
    response = admin_api.put(url(policy), data, format="json")
    assert_status(response, 200)
    settings = response.json()["settings"]
    assert settings["mode"] == "enforce" and settings["window_start"] == "22:00:00"
    policy.refresh_from_db()
    assert policy.mode == "enforce"
    assert RemediationSettings.objects.get(pk=policy.pk).window_timezone == "Europe/Berlin"


@pytest.mark.parametrize("persona", ["operator_api", "viewer_api"])
def test_only_admins_switch_to_enforce(request, persona, policy):
    response = request.getfixturevalue(persona).put(url(policy), {"mode": "enforce"}, format="json")
    assert_status(response, 403)
    policy.refresh_from_db()
    assert policy.mode == "audit"


def test_anonymous_gets_nothing(client, policy):
    assert client.get(url(policy)).status_code in (401, 403)


def test_bad_settings_come_back_in_the_envelope_per_field_and_nothing_changes(admin_api, policy):
    response = admin_api.put(
        url(policy),
        {"mode": "enforce", "max_percent": 0, "window_timezone": "Nowhere/Land", "window_days": [9]},
        format="json",
    )
    assert_status(response, 400)
    body = response.json()
    assert body["error"] == "invalid"
    assert set(body["errors"]) == {"max_percent", "window_timezone", "window_days"}
    assert "Nowhere/Land" in body["errors"]["window_timezone"][0]
    policy.refresh_from_db()
    assert policy.mode == "audit"
    response = admin_api.put(url(policy), {"mode": "loud"}, format="json")
    assert_status(response, 400)
    assert "mode" in response.json()["errors"]


def test_unknown_settings_are_refused(admin_api, policy):
    response = admin_api.put(url(policy), {"max_instances": 2, "colour": "red"}, format="json")
    assert_status(response, 400)
    assert response.json()["errors"] == {"colour": ["Unknown setting."]}


def test_the_preview_of_a_saved_policy_and_of_unsaved_rules(viewer_api, admin_api, policy):
    response = viewer_api.get(url(policy, "/preview"))
    assert_status(response, 200)
    body = response.json()
    assert body["instances"] == 3
    assert body["commands"][0]["command"] == "install_app monitoring-agent → 2.4.0"
    assert body["commands"][0]["count"] == 3
    draft = {"policy_type": "baseline", "rules": {"settings": {"ssh.password_auth": False}}}
    assert_status(viewer_api.post("/api/governance/remediation/preview", draft, format="json"), 403)
    response = admin_api.post("/api/governance/remediation/preview", draft, format="json")
    assert_status(response, 200)
    assert response.json()["commands"][0]["command"] == "set_config ssh.password_auth=false"
    bad = admin_api.post(
        "/api/governance/remediation/preview", {"policy_type": "baseline", "rules": {"x": 1}}, format="json"
    )
    assert_status(bad, 400)
    assert any(k.startswith("rules") for k in bad.json()["errors"])
    assert not Command.objects.exists()


def test_resume_after_a_pause_is_for_admins_and_refused_when_not_paused(admin_api, operator_api, policy, admin_user):
    remediation_update(actor=admin_user, policy=policy, data={"mode": "enforce"})
    assert_status(admin_api.post(url(policy, "/resume")), 409)
    pause(policy=policy, reason="Too many failures.")
    assert admin_api.get(url(policy)).json()["status"]["pause_reason"] == "Too many failures."
    assert_status(operator_api.post(url(policy, "/resume")), 403)
    response = admin_api.post(url(policy, "/resume"))
    assert_status(response, 200)
    assert response.json()["status"]["paused"] is False


def test_a_violation_shows_its_attempts_runs_and_that_remediation_resolved_it(viewer_api, policy, admin_user):
    remediation_update(actor=admin_user, policy=policy, data={"mode": "enforce"})
    remediate_policy(policy_id=policy.pk)
    attempt = RemediationAttempt.objects.select_related("instance").first()
    violation_id = attempt.violation_id
    detail = viewer_api.get(f"/api/governance/violations/{violation_id}").json()
    assert detail["remediation"]["resolved_by_remediation"] is False
    assert detail["remediation"]["attempts"][0]["outcome"] == "pending"
    assert detail["remediation"]["attempts"][0]["run_status"] == RunStatus.PENDING
    agent_finishes(attempt.instance)
    remediate_policy(policy_id=policy.pk)
    body = viewer_api.get(f"/api/governance/violations/{violation_id}/remediation").json()
    assert body["resolved_by_remediation"] is True
    assert body["attempts"][0]["outcome"] == "fixed"
    assert body["attempts"][0]["run_status"] == RunStatus.COMPLETED
    assert body["attempts"][0]["command_text"] == "install_app monitoring-agent → 2.4.0"
    assert Violation.objects.get(pk=violation_id).status == "resolved"
    # The list stays lean: no attempts there.
    listed = viewer_api.get("/api/governance/violations").json()
    assert "remediation" not in listed["results"][0]


def test_switching_the_mode_is_a_policy_version_saying_where_it_came_from(admin_api, admin_client, policy):
    from governance.models import PolicyVersion

    before = PolicyVersion.objects.filter(policy=policy).count()
    assert_status(admin_api.patch(url(policy), {"mode": "enforce"}, format="json"), 200)
    latest = PolicyVersion.objects.filter(policy=policy).order_by("-number").first()
    assert PolicyVersion.objects.filter(policy=policy).count() == before + 1
    assert (latest.snapshot["mode"], latest.source) == ("enforce", "api")
    assert_status(admin_api.patch(url(policy), {"max_instances": 3}, format="json"), 200)  # rails only
    assert PolicyVersion.objects.filter(policy=policy).count() == before + 1


def test_the_mode_of_a_git_owned_policy_is_refused_but_its_rails_are_the_panels(admin_api, policy):
    from gitops.models import Repository
    from governance.models import Policy

    repo = Repository.objects.create(name="fleet-config", url="ssh://git@127.0.0.1/x", private_key_encrypted="-")
    Policy.objects.filter(pk=policy.pk).update(git_repository=repo, git_path="policies/agent.yaml")
    response = admin_api.patch(url(policy), {"mode": "enforce", "max_instances": 2}, format="json")
    assert_status(response, 409)
    assert response.json()["error"] == "policy_managed_by_git" and "fleet-config" in response.json()["message"]
    policy.refresh_from_db()
    assert policy.mode == "audit" and not RemediationSettings.objects.filter(pk=policy.pk, max_instances=2).exists()
    assert_status(admin_api.patch(url(policy), {"max_instances": 2}, format="json"), 200)
