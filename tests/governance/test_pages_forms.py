"""The policy forms: every rule error at once, each on the field that holds it, outlined, with the API's words."""

import pytest
from django.urls import reverse

from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db


def post_policy(client, policy_type, data):
    response = client.post(reverse("governance:policy_create", args=[policy_type]), {"scope_kind": "all", **data})
    assert_status(response, 200)  # shown again with the errors, nothing saved
    return response.context["form"], response.content.decode()


def test_rule_syntax_errors_show_on_the_rule_field_together_with_the_other_fields_errors(admin_client):
    form, html = post_policy(
        admin_client, "required_apps", {"name": "", "apps": "nginx\nbad line here\nfoo >= not a version!\nNginx"}
    )
    assert "name" in form.errors  # the missing name does not hide the rule errors
    errors = form.errors["apps"]
    assert any(e.startswith("Line 2 ('bad line here')") for e in errors)
    assert any(e.startswith("Line 3") for e in errors)
    assert any(e.startswith("Line 4 ('Nginx')") and "not an app name" in e for e in errors)
    assert not form.non_field_errors()
    assert 'class="mb-3 field-apps has-error"' in html
    assert 'name="apps"' in html.split("field-apps has-error")[1].split("</textarea>")[0]
    assert "is-invalid" in html.split("field-apps has-error")[1].split("</textarea>")[0]


def test_a_whole_rules_error_lands_on_the_rule_field_not_a_banner(admin_client):
    form, _ = post_policy(admin_client, "blocked_apps", {"name": "Empty range", "apps": "postgresql >= 16 < 15"})
    assert "the range from 16 below 15 is empty" in form.errors["apps"][0].lower()
    assert not form.non_field_errors()


def test_baseline_os_version_errors_land_on_the_os_version_field(admin_client):
    form, _ = post_policy(
        admin_client, "baseline", {"name": "Base", "os_version": "not a version", "os_match": "minimum", "settings": ""}
    )
    assert "os_version" in form.errors and not form.non_field_errors()


def test_a_duplicate_name_from_the_service_shows_on_the_name_field(admin_client):
    make_policy(name="Need agent")
    form, _ = post_policy(admin_client, "required_apps", {"name": "need agent", "apps": "monitoring-agent"})
    assert "already exists" in form.errors["name"][0]


def test_the_blocked_apps_rules_card_shows_the_version_range_as_the_violation_does(admin_client):
    policy = make_policy(
        name="Old postgres",
        policy_type="blocked_apps",
        rules={"apps": [{"pattern": "postgresql", "below_version": "16"}, {"pattern": "telnetd"}]},
    )
    html = admin_client.get(policy.get_absolute_url()).content.decode()
    assert "postgresql must not be installed below 16" in html
    assert "telnetd must not be installed <" in html


def test_the_edit_form_opens_with_the_policy_as_it_is(admin_client, group):
    from fleet.scopes import Scope

    policy = make_policy(
        name="Old postgres",
        policy_type="blocked_apps",
        rules={"apps": [{"pattern": "postgresql", "min_version": "9", "below_version": "16"}]},
        scope=Scope(kind="groups", group_ids=(group.pk,)),
    )
    response = admin_client.get(reverse("governance:policy_edit", args=[policy.pk]))
    form = response.context["form"]
    assert form["name"].value() == "Old postgres"
    assert form["apps"].value() == "postgresql >= 9 < 16"
    assert form["scope_kind"].value() == "groups"
