"""An instance's health address is host[:port] only, by one validator (common.net.validate_address), on
each of the three ways in: registration, the API and the server edit page."""

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from fleet import services
from fleet.models import Instance
from tests.base import assert_status

from .helpers import make_instance

REFUSED = [
    "user:pw@127.0.0.1:58990/internal?x=",  # the HTML edit stored this although the API refused it
    "http://127.0.0.1:8080",
    "127.0.0.1:8080/health",
    "127.0.0.1:8080?x=1",
    "127.0.0.1:0",
    "127.0.0.1:70000",  # would wrap to 4464
    "127.0.0.1:-1",
    "::1:8080",
    "[::1",
    "bad_host:80",
    "300.1.1.1:80",
    "web 01:80",
]
ACCEPTED = ["127.0.0.1:8080", "web-01.example.com:8080", "web-01", "[::1]:8080", "10.0.0.5:65535"]


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()


def register(address):
    _token, plaintext = services.registration_token_create(actor=None, name="t")
    return APIClient().post(
        "/api/agent/register", {"token": plaintext, "name": "web-01", "address": address}, format="json"
    )


@pytest.mark.parametrize("address", REFUSED)
def test_registration_refuses_an_address_that_is_not_host_and_port(db, address):
    response = register(address)
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["address"]
    assert not Instance.objects.exists()


@pytest.mark.parametrize("address", [*ACCEPTED, ""])
def test_registration_accepts_host_and_port_or_no_address(db, address):
    assert_status(register(address), 201)
    assert Instance.objects.get().address == address


@pytest.mark.parametrize("address", REFUSED)
def test_the_api_refuses_the_same_addresses_and_keeps_the_old_one(admin_api, address):
    instance = make_instance("web-01")
    response = admin_api.patch(f"/api/fleet/instances/{instance.pk}", {"address": address}, format="json")
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["address"]
    assert Instance.objects.get(pk=instance.pk).address == "127.0.0.1:9"


@pytest.mark.parametrize("address", ACCEPTED)
def test_the_api_stores_a_host_and_port(admin_api, address):
    instance = make_instance("web-01")
    response = admin_api.patch(f"/api/fleet/instances/{instance.pk}", {"address": address}, format="json")
    assert_status(response, 200)
    assert Instance.objects.get(pk=instance.pk).address == address


@pytest.mark.parametrize("address", REFUSED)
def test_the_server_edit_page_refuses_the_same_addresses_on_the_field(admin_client, address):
    instance = make_instance("web-01")
    response = admin_client.post(reverse("fleet:server_edit", args=[instance.pk]), {"address": address, "tags": ""})
    assert_status(response, 200)
    assert list(response.context["form"].errors) == ["address"]
    assert "is-invalid" in response.content.decode()
    assert Instance.objects.get(pk=instance.pk).address == "127.0.0.1:9"


def test_the_server_edit_page_stores_a_host_and_port(admin_client):
    instance = make_instance("web-01")
    response = admin_client.post(
        reverse("fleet:server_edit", args=[instance.pk]), {"address": " [::1]:8080 ", "tags": ""}
    )
    assert_status(response, 302)
    assert Instance.objects.get(pk=instance.pk).address == "[::1]:8080"
