"""Enforce mode in the browser's pages: the Mode + Remediation form with its preview, errors on the fields,
admin-only saving, the status panel on the policy page, and a violation's attempts."""

import pytest

from governance.models import RemediationAttempt, RemediationSettings
from governance.remediation.rails import remediation_update
from governance.remediation.services import pause, remediate_policy
from tests.base import assert_status

from .conftest import make_policy
from .test_remediation import AGENT, agent_finishes

pytestmark = pytest.mark.django_db

FORM = {
    "mode": "enforce",
    "max_instances": "2",
    "max_percent": "",
    "max_per_hour": "10",
    "window_start": "",
    "window_end": "",
    "window_timezone": "UTC",
    "max_attempts": "3",
    "backoff_seconds": "300",
    "breaker_percent": "50",
    "breaker_min_attempts": "3",
    "canary_percentage": "20",
    "canary_check_interval": "30",
    "canary_max_duration": "600",
}


@pytest.fixture
def policy(admin_user, make_instance):
    for _ in range(3):
        make_instance(apps=[])
    return make_policy(admin_user, rules=AGENT)


def page(policy):
    return f"/governance/policies/{policy.pk}/remediation/"


def test_the_form_shows_which_instances_would_get_which_command(viewer_client, policy):
    response = viewer_client.get(page(policy))
    assert_status(response, 200)
    text = response.content.decode()
    assert "3</strong> instances would get these commands" in text
    assert "install_app monitoring-agent → 2.4.0" in text
    assert "Only admins change the mode" in text


def test_previewing_shows_the_rails_before_saving_and_saves_nothing(admin_client, policy):
    response = admin_client.post(page(policy), {**FORM, "window_start": "22:00", "window_end": "04:00", "preview": "1"})
    assert_status(response, 200)
    text = response.content.decode()
    assert "These rails, before saving" in text and "22:00–04:00" in text
    policy.refresh_from_db()
    assert policy.mode == "audit" and not RemediationSettings.objects.filter(pk=policy.pk, max_per_hour=10).exists()


def test_an_admin_saves_enforce_mode_and_the_policy_page_says_so(admin_client, policy):
    response = admin_client.post(page(policy), {**FORM, "window_days": ["5", "6"]})
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.mode == "enforce"
    rails = RemediationSettings.objects.get(pk=policy.pk)
    assert (rails.max_instances, rails.max_per_hour, rails.window_days) == (2, 10, [5, 6])
    panel = admin_client.get(f"/governance/policies/{policy.pk}/remediation/panel/").content.decode()
    assert "enforce" in panel and "In flight: 0 of 2" in panel and "started in the last hour: 0 of 10" in panel


def test_bad_values_land_on_their_fields_and_nothing_is_saved(admin_client, policy):
    response = admin_client.post(page(policy), {**FORM, "window_timezone": "Mars/Olympus", "max_percent": "150"})
    assert_status(response, 200)
    form = response.context["form"]
    assert "Mars/Olympus" in form.errors["window_timezone"][0]
    assert "between 1 and 100" in form.errors["max_percent"][0]
    policy.refresh_from_db()
    assert policy.mode == "audit"


@pytest.mark.parametrize("persona", ["operator_client", "viewer_client"])
def test_only_admins_save(request, persona, policy):
    client = request.getfixturevalue(persona)
    assert client.post(page(policy), FORM).status_code == 403
    policy.refresh_from_db()
    assert policy.mode == "audit"


def test_a_paused_policy_shows_why_and_an_admin_resumes_it(admin_client, policy, admin_user):
    remediation_update(actor=admin_user, policy=policy, data={"mode": "enforce"})
    pause(policy=policy, reason="4 of 5 remediation attempts failed in the last hour (more than 50 %).")
    panel = admin_client.get(f"/governance/policies/{policy.pk}/remediation/panel/").content.decode()
    assert "Remediation paused" in panel and "4 of 5 remediation attempts failed" in panel
    response = admin_client.post(f"/governance/policies/{policy.pk}/remediation/resume/")
    assert response.status_code == 302
    assert RemediationSettings.objects.get(pk=policy.pk).paused_at is None


def test_the_violation_page_lists_attempts_and_says_resolved_by_remediation(viewer_client, policy, admin_user):
    remediation_update(actor=admin_user, policy=policy, data={"mode": "enforce"})
    remediate_policy(policy_id=policy.pk)
    attempt = RemediationAttempt.objects.select_related("instance").first()
    agent_finishes(attempt.instance)
    remediate_policy(policy_id=policy.pk)
    response = viewer_client.get(f"/governance/violations/{attempt.violation_id}/")
    assert_status(response, 200)
    text = response.content.decode()
    assert "resolved by remediation" in text
    assert f"run #{attempt.run_id}" in text and "Fixed (violation resolved)" in text
    listing = viewer_client.get(f"/governance/policies/{policy.pk}/").content.decode()
    assert (
        f"/governance/violations/{RemediationAttempt.objects.filter(outcome='pending').first().violation_id}/"
        in listing
    )


def test_the_policy_form_preview_also_says_what_enforce_mode_would_queue(admin_client, make_instance):
    make_instance("db-1", apps=[("outdated-db", "1.4")])
    make_instance("db-2", apps=[("outdated-db", "2.1")])
    response = admin_client.post(
        "/governance/policies/preview/blocked_apps/",
        {"name": "x", "apps": "outdated-db < 2.0", "scope_kind": "all"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert "what enforce mode would queue" in html
    assert "uninstall_app outdated-db</span> on 1: db-1" in html
