"""The policy form's Mode and remediation rails: chosen and saved with the policy, in one transaction; the
rails' errors on their fields together with the policy's; the preview shows the commands and the rails
before saving; nothing half-applied; Git-owned policies stay read-only."""

import pytest
from django.urls import reverse

from governance.models import Policy, PolicyVersion, RemediationSettings
from tests.base import assert_status

from .conftest import make_policy
from .test_remediation import AGENT

pytestmark = pytest.mark.django_db

RAILS = {
    "rails-max_instances": "2",
    "rails-max_percent": "",
    "rails-max_per_hour": "10",
    "rails-window_start": "22:00",
    "rails-window_end": "04:00",
    "rails-window_timezone": "Europe/Berlin",
    "rails-max_attempts": "3",
    "rails-backoff_seconds": "300",
    "rails-breaker_percent": "50",
    "rails-breaker_min_attempts": "3",
    "rails-canary_percentage": "20",
    "rails-canary_check_interval": "30",
    "rails-canary_max_duration": "600",
}
POLICY = {"name": "Agent everywhere", "apps": "monitoring-agent >= 2.4.0", "scope_kind": "all", "enabled": "on"}


def create(client, data):
    return client.post(reverse("governance:policy_create", args=["required_apps"]), data)


@pytest.fixture
def fleet(make_instance):
    return [make_instance(apps=[]) for _ in range(3)]


def test_the_form_offers_audit_and_enforce_with_the_rails_audit_chosen(admin_client):
    html = admin_client.get(reverse("governance:policy_create", args=["required_apps"])).content.decode()
    assert 'name="mode" value="audit"' in html and 'name="mode" value="enforce"' in html
    assert 'value="audit" class="" id="id_mode_0" checked' in html or 'id="id_mode_0" checked' in html
    assert 'id="policy-rails"' in html and 'name="rails-max_per_hour"' in html


def test_an_admin_creates_a_policy_in_enforce_mode_with_its_rails_in_one_save(admin_client, fleet):
    response = create(admin_client, {**POLICY, "mode": "enforce", **RAILS, "rails-window_days": ["5", "6"]})
    assert response.status_code == 302
    policy = Policy.objects.get(name="Agent everywhere")
    assert policy.mode == "enforce"
    rails = RemediationSettings.objects.get(pk=policy.pk)
    assert (rails.max_instances, rails.max_per_hour, rails.window_days, rails.window_timezone) == (
        2,
        10,
        [5, 6],
        "Europe/Berlin",
    )
    assert str(rails.window_start) == "22:00:00"


def test_an_audit_policy_saves_no_rails_and_ignores_the_hidden_rails_fields(admin_client):
    response = create(admin_client, {**POLICY, "mode": "audit", **RAILS, "rails-max_percent": "900"})
    assert response.status_code == 302
    policy = Policy.objects.get(name="Agent everywhere")
    assert policy.mode == "audit" and not RemediationSettings.objects.filter(pk=policy.pk).exists()


def test_bad_rails_and_a_bad_policy_field_show_together_on_their_fields_and_nothing_is_saved(admin_client):
    bad = {**RAILS, "rails-window_timezone": "Mars/Olympus", "rails-max_percent": "150", "rails-window_end": ""}
    response = create(admin_client, {**POLICY, "name": "", "mode": "enforce", **bad})
    assert_status(response, 200)
    form, rails = response.context["form"], response.context["rails_form"]
    assert "name" in form.errors
    assert "Mars/Olympus" in rails.errors["window_timezone"][0]
    assert "between 1 and 100" in rails.errors["max_percent"][0]
    assert "both the start and the end" in rails.errors["window_end"][0]
    html = response.content.decode()
    assert "field-window_timezone has-error" in html and "Mars/Olympus" in html
    assert not Policy.objects.exists() and not RemediationSettings.objects.exists()


def test_valid_policy_with_invalid_rails_is_not_saved_half(admin_client):
    response = create(admin_client, {**POLICY, "mode": "enforce", **RAILS, "rails-max_attempts": "0"})
    assert_status(response, 200)
    assert "between 1 and 20" in response.context["rails_form"].errors["max_attempts"][0]
    assert not Policy.objects.exists() and not PolicyVersion.objects.exists()


def test_a_refused_policy_keeps_its_rails_unsaved_too(admin_client):
    make_policy(name="Agent everywhere")
    response = create(admin_client, {**POLICY, "mode": "enforce", **RAILS})
    assert_status(response, 200)
    assert "already exists" in response.context["form"].errors["name"][0]
    assert Policy.objects.count() == 1 and not RemediationSettings.objects.exists()


def test_editing_switches_a_policy_to_enforce_and_keeps_the_saved_rails_as_initial(admin_client, admin_user, fleet):
    policy = make_policy(admin_user, name="Agent", rules=AGENT)
    url = reverse("governance:policy_edit", args=[policy.pk])
    data = {**POLICY, "name": "Agent", "mode": "enforce", **RAILS, "rails-max_instances": "1"}
    assert admin_client.post(url, data).status_code == 302
    policy.refresh_from_db()
    assert policy.mode == "enforce" and RemediationSettings.objects.get(pk=policy.pk).max_instances == 1
    html = admin_client.get(url).content.decode()
    assert 'id="id_mode_1" checked' in html
    assert 'name="rails-max_instances" value="1"' in html
    # Back to audit: the mode changes, the rails stay as saved.
    assert admin_client.post(url, {**data, "mode": "audit", "rails-max_instances": "7"}).status_code == 302
    policy.refresh_from_db()
    assert policy.mode == "audit" and RemediationSettings.objects.get(pk=policy.pk).max_instances == 1


def test_a_form_without_mode_keeps_the_policys_mode(admin_client, admin_user):
    policy = make_policy(admin_user, name="Agent", rules=AGENT)
    Policy.objects.filter(pk=policy.pk).update(mode="enforce")
    url = reverse("governance:policy_edit", args=[policy.pk])
    assert admin_client.post(url, {**POLICY, "name": "Agent"}).status_code == 302
    policy.refresh_from_db()
    assert policy.mode == "enforce"


def test_the_preview_in_enforce_mode_lists_the_commands_and_the_rails_before_saving(admin_client, fleet):
    url = reverse("governance:policy_preview", args=["required_apps"])
    html = admin_client.post(
        url, {**POLICY, "mode": "enforce", **RAILS, "rails-window_days": ["5", "6"]}
    ).content.decode()
    assert "3</strong> instances would get these commands" in html
    assert "install_app monitoring-agent → 2.4.0" in html
    assert "At once: at most 2 instances; per hour: 10" in html
    assert "These rails, before saving" in html and "22:00–04:00 on Sat, Sun" in html and "Europe/Berlin" in html
    bad = admin_client.post(url, {**POLICY, "mode": "enforce", **RAILS, "rails-max_percent": "150"}).content.decode()
    assert "Remediation rails:" in bad and "between 1 and 100" in bad
    audit = admin_client.post(url, {**POLICY, "mode": "audit", **RAILS}).content.decode()
    assert "These rails, before saving" not in audit
    assert not Policy.objects.exists() and not RemediationSettings.objects.exists()


def test_operators_and_viewers_cannot_open_or_post_the_policy_form(operator_client, viewer_client):
    url = reverse("governance:policy_create", args=["required_apps"])
    for client in (operator_client, viewer_client):
        assert client.get(url).status_code == 403
        assert create(client, {**POLICY, "mode": "enforce", **RAILS}).status_code == 403
    assert not Policy.objects.exists()


def test_a_git_owned_policy_cannot_be_switched_to_enforce_from_the_form(admin_client, admin_user):
    from gitops.models import Repository

    repo = Repository.objects.create(name="fleet-config", url="ssh://git@127.0.0.1/x", private_key_encrypted="-")
    policy = make_policy(admin_user, name="Agent", rules=AGENT)
    Policy.objects.filter(pk=policy.pk).update(git_repository=repo, git_path="policies/agent.yaml")
    url = reverse("governance:policy_edit", args=[policy.pk])
    response = admin_client.post(url, {**POLICY, "name": "Agent", "mode": "enforce", **RAILS})
    assert response.status_code == 409
    policy.refresh_from_db()
    assert policy.mode == "audit" and not RemediationSettings.objects.filter(pk=policy.pk).exists()
