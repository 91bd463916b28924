"""Scope input (commands, policies, exceptions, canaries) with names that cannot be stored: a field error
at the scope's own path, never a database error. fleet.api.fields.ScopeSerializer (API) and
fleet.forms.ScopeFormMixin (pages) are the one place each checks it."""

import pytest
from django.urls import reverse
from rest_framework import serializers

from fleet.api.fields import ScopeSerializer
from fleet.models import Command
from tests.base import assert_status

from .helpers import make_group, make_instance

HOSTILE_NAMES = ["web\x00", "\ud800", "a" * 101]


class ScopedInput(serializers.Serializer):
    scope = ScopeSerializer()


@pytest.fixture
def web(db):
    make_instance("web-01", groups=["web"], tags=["env=production"])
    return make_group("web")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_scope_serializer_refuses_a_group_name_that_cannot_be_stored_by_its_index(web, name):
    data = {"scope": {"kind": "groups", "groups": ["web", name]}}
    serializer = ScopedInput(data=data)
    assert not serializer.is_valid()
    assert list(serializer.errors["scope"]["groups"]) == [1]


@pytest.mark.parametrize("tag", ["env=prod\x00", "\udfff=x"])
def test_the_scope_serializer_refuses_a_tag_that_cannot_be_stored(web, tag):
    serializer = ScopedInput(data={"scope": {"kind": "tags", "tags": [tag]}})
    assert not serializer.is_valid()
    assert "tags" in serializer.errors["scope"]


def test_an_unknown_group_is_named_by_its_path(operator_api, web):
    body = {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "groups", "groups": ["web", "db"]}}
    response = operator_api.post("/api/fleet/commands", body, format="json")
    assert_status(response, 400)
    assert response.json()["errors"] == {"scope.groups[1]": ["There is no group named 'db'."]}


def test_a_scope_problem_is_reported_on_the_scope_field_it_concerns(operator_api, web):
    body = {"kind": "restart_app", "params": {"app": "nginx"}, "scope": {"kind": "tags", "tags": []}}
    response = operator_api.post("/api/fleet/commands", body, format="json")
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["scope.tags"]


@pytest.mark.parametrize(
    ("path", "escaped"),
    [
        ("/api/fleet/commands", "web\\u0000"),
        ("/api/fleet/commands", "\\ud800"),
        ("/api/governance/policies", "web\\u0000"),
        ("/api/governance/exceptions", "\\ud800"),
    ],
)
def test_json_with_such_a_group_name_is_refused_at_the_scope_path_on_every_scoped_endpoint(
    admin_api, web, path, escaped
):
    text = '{"name": "x", "kind": "restart_app", "scope": {"kind": "groups", "groups": ["' + escaped + '"]}}'
    response = admin_api.generic("POST", path, text, content_type="application/json")
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["scope.groups[0]"]
    assert not Command.objects.exists()


def test_the_command_form_refuses_a_tag_filter_with_nul_on_that_field_alone(operator_client, web):
    response = operator_client.post(
        reverse("fleet:command_create"),
        {"kind": "restart_app", "app": "nginx", "scope_kind": "tags", "scope_tags": "env=production\x00"},
    )
    assert_status(response, 200)
    assert list(response.context["form"].errors) == ["scope_tags"]
    assert len(response.context["form"].errors["scope_tags"]) == 1
    assert not Command.objects.exists()


def test_the_command_form_refuses_a_group_that_is_not_an_id(operator_client, web):
    response = operator_client.post(
        reverse("fleet:command_create"),
        {"kind": "restart_app", "app": "nginx", "scope_kind": "groups", "scope_groups": ["web\x00"]},
    )
    assert_status(response, 200)
    assert list(response.context["form"].errors) == ["scope_groups"]
    assert not Command.objects.exists()


def test_the_target_preview_answers_a_hostile_tag_filter_with_the_error(viewer_client, web):
    response = viewer_client.get(reverse("fleet:target_preview"), {"scope_kind": "tags", "scope_tags": "a\x00=b"})
    assert_status(response, 200)
    assert "Null characters are not allowed" in response.content.decode()
