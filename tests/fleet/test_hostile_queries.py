"""Ids, numbers and times from outside that the database cannot hold (a 20-digit id, 1e400, NUL, an offset
of -17:00): on every fleet page, filter and form, a field error or nothing found, never a 500."""

import pytest

from fleet.models import RegistrationToken

from .helpers import make_instance

BIG = "99999999999999999999"  # beyond 64 bits: SQLite cannot bind it, PostgreSQL's bigint cannot hold it

READS = [
    f"/api/fleet/instances?group={BIG}",
    f"/api/fleet/command-runs?command={BIG}",
    "/api/fleet/command-runs?command=1e400",
    f"/api/fleet/command-runs?instance={BIG}",
    f"/api/fleet/commands?instance={BIG}",
    f"/api/fleet/instances?page={BIG}",
    f"/api/fleet/instances/{BIG}",
    "/api/fleet/instances?tag=a%00=b",
    "/api/fleet/instances?os_version=%00",
    "/api/audit?actor=%00",
    f"/servers/{BIG}/",
    f"/servers/?group={BIG}",
    f"/servers/?page={BIG}",
    f"/servers/{BIG}/apps/",
    f"/operations/?instance={BIG}",
    f"/operations/new/?instance={BIG}",
    f"/operations/target-preview/?scope_kind=instances&scope_instances={BIG}",
    f"/operations/target-preview/?scope_kind=groups&scope_groups={BIG}",
    "/settings/audit/?until=%00",
]


@pytest.mark.parametrize("url", READS)
def test_a_read_with_a_value_the_database_cannot_hold_is_answered_in_words(admin_client, url):
    make_instance("web-01")
    response = admin_client.get(url)
    assert response.status_code in (200, 400, 404), (url, response.status_code)


WRITES = [
    (
        "/api/fleet/commands",
        {"kind": "restart_app", "params": {"app": "x"}, "scope": {"kind": "instances", "instances": [int(BIG)]}},
        "scope.instances",
    ),
    ("/api/fleet/registration-tokens", {"name": "x", "max_uses": int(BIG)}, "max_uses"),
    ("/api/fleet/registration-tokens", {"name": "x", "expires_at": "2030-01-01T00:00:00-17:00"}, "expires_at"),
    ("/api/fleet/registration-tokens", {"name": "x", "expires_at": "0001-01-01T00:00:00+14:00"}, "expires_at"),
    ("/api/fleet/registration-tokens", {"name": "x" * 101}, "name"),
    (
        "/api/fleet/commands",
        {"kind": "restart_app", "params": {"app": "x"}, "scope": {"kind": "all"}, "timeout_seconds": int(BIG)},
        "timeout_seconds",
    ),
]


@pytest.mark.parametrize(("url", "body", "path"), WRITES)
def test_a_write_with_such_a_value_is_a_field_error(admin_api, url, body, path):
    make_instance("web-01")
    response = admin_api.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [path]
    assert not RegistrationToken.objects.exists()


def test_the_token_form_refuses_an_expiry_outside_the_shared_range(admin_client):
    response = admin_client.post(
        "/registration-tokens/new/", {"name": "x", "usage": "one_time", "expires_at": "0001-01-01"}
    )
    assert response.status_code == 200
    assert "expires_at" in response.context["form"].errors
    assert not RegistrationToken.objects.exists()


def test_the_command_form_refuses_an_instance_id_beyond_64_bits(operator_client):
    make_instance("web-01")
    response = operator_client.post(
        "/operations/new/", {"kind": "restart_app", "app": "nginx", "scope_kind": "instances", "scope_instances": [BIG]}
    )
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["scope_instances"]
