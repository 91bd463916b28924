"""Registration tokens: one-time, usage limits, expiry, revocation, and a history of every attempt."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from fleet import services
from fleet.models import Instance, RegistrationToken, TokenUse
from tests.base import assert_status


def register(token, name, **extra):
    return APIClient().post("/api/agent/register", {"token": token, "name": name, **extra}, format="json")


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()  # throttle counters live in the cache; each test starts from zero


def test_registering_returns_a_credential_whose_secret_is_stored_only_as_a_hash(db, settings):
    _t, token = services.registration_token_create(actor=None, name="t")
    response = register(token, "web-01", hostname="web-01.lan", address="10.0.0.5:8080", os_version="24.04.2")
    assert_status(response, 201)
    body = response.json()
    instance = Instance.objects.get(pk=body["instance_id"])
    assert (instance.name, instance.address, instance.os_version) == ("web-01", "10.0.0.5:8080", "24.04.2")
    assert body["heartbeat_interval"] == settings.HEARTBEAT_INTERVAL
    secret = body["credential"].split(".", 1)[1]
    assert secret not in instance.agent_secret_hash
    assert services.agent_authenticate(body["credential"]) == instance


def test_the_token_gives_its_groups_and_tags_to_the_new_instance(db):
    group = services.group_create(actor=None, name="edge")
    _t, token = services.registration_token_create(actor=None, name="t", groups=[group], tags=["env=staging"])
    assert_status(register(token, "edge-01"), 201)
    instance = Instance.objects.get(name="edge-01")
    assert [g.name for g in instance.groups.all()] == ["edge"]
    assert [str(t) for t in instance.tags.all()] == ["env=staging"]


def test_a_one_time_token_works_once_and_records_the_refused_second_attempt(db):
    record, token = services.registration_token_create(actor=None, name="once", max_uses=1)
    assert_status(register(token, "a"), 201)
    response = register(token, "b")
    assert_status(response, 400)
    assert "usage limit" in response.json()["message"]
    assert not Instance.objects.filter(name="b").exists()
    uses = list(TokenUse.objects.filter(token=record).order_by("id").values_list("accepted", "reason"))
    assert uses[0] == (True, "")
    assert uses[1][0] is False and "usage limit" in uses[1][1]


def test_a_usage_limit_counts_registrations(db):
    record, token = services.registration_token_create(actor=None, name="three", max_uses=3)
    for n in range(3):
        assert_status(register(token, f"i{n}"), 201)
    assert_status(register(token, "i3"), 400)
    record.refresh_from_db()
    assert record.use_count == 3
    assert record.status == "exhausted"


def test_an_expired_token_is_refused(db):
    record, token = services.registration_token_create(
        actor=None, name="soon", expires_at=timezone.now() + timedelta(minutes=5)
    )
    RegistrationToken.objects.filter(pk=record.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = register(token, "late")
    assert_status(response, 400)
    assert "expired" in response.json()["message"]


def test_a_revoked_token_is_refused(db, admin_user):
    record, token = services.registration_token_create(actor=None, name="r")
    services.registration_token_revoke(actor=admin_user, token=record)
    response = register(token, "x")
    assert_status(response, 400)
    assert "revoked" in response.json()["message"]
    assert TokenUse.objects.get(token=record).accepted is False


def test_a_wrong_secret_or_garbage_token_is_refused_without_touching_the_real_token(db):
    record, token = services.registration_token_create(actor=None, name="r")
    forged = token[: token.rindex("_") + 1] + "not-the-secret"
    for bad in (forged, "garbage", "reg_nope_nope"):
        response = register(bad, "x")
        assert_status(response, 400)
        assert response.json()["message"] == "The registration token is not valid."
    assert record.uses.count() == 0


def test_a_duplicate_instance_name_is_refused_and_recorded(db):
    _first, first_token = services.registration_token_create(actor=None, name="first")
    record, token = services.registration_token_create(actor=None, name="r")
    assert_status(register(first_token, "dup"), 201)
    response = register(token, "dup")
    assert_status(response, 400)
    assert "already registered" in response.json()["message"]
    assert record.uses.filter(accepted=False).count() == 1


def test_the_license_instance_limit_stops_registration(db, install_license):
    install_license("pro", limits={"max_instances": 1})
    _r, token = services.registration_token_create(actor=None, name="r")
    assert_status(register(token, "one"), 201)
    response = register(token, "two")
    assert_status(response, 400)
    assert "allows 1 instances" in response.json()["message"]


def test_registration_is_throttled_per_address(db, monkeypatch):
    # DRF reads the rates once at import; the setting's "register" scope is what is patched here.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"register": "2/min", "agent": "6000/min"})
    codes = [register("garbage", f"n{i}").status_code for i in range(3)]
    assert codes == [400, 400, 429]


# --- A repeated registration (the agent never got the reply) ----------------------------------


def heartbeat(credential):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {credential}")
    return client.post("/api/agent/heartbeat", {"os_version": "24.04", "apps": []}, format="json")


def test_a_repeated_registration_gets_a_new_credential_for_the_same_instance(db):
    record, token = services.registration_token_create(actor=None, name="once", max_uses=1)
    lost = register(token, "web-01").json()
    again = register(token, "web-01")
    assert_status(again, 201)
    assert again.json()["instance_id"] == lost["instance_id"]
    assert Instance.objects.filter(name="web-01").count() == 1
    assert_status(heartbeat(lost["credential"]), 401)  # the lost credential no longer works
    assert_status(heartbeat(again.json()["credential"]), 200)
    record.refresh_from_db()
    assert record.use_count == 1  # the repeat used the token no further
    uses = list(TokenUse.objects.filter(token=record).order_by("id").values_list("accepted", "reason"))
    assert uses == [(True, ""), (True, "repeated registration: new credential")]


def test_once_the_instance_has_heartbeated_the_name_is_taken(db):
    _record, token = services.registration_token_create(actor=None, name="t")
    first = register(token, "web-01").json()
    assert_status(heartbeat(first["credential"]), 200)
    response = register(token, "web-01")
    assert_status(response, 400)
    assert "already registered" in response.json()["message"]
    assert_status(heartbeat(first["credential"]), 200)  # the running agent keeps its credential


def test_another_token_cannot_take_over_a_pending_instance(db):
    _r1, token_a = services.registration_token_create(actor=None, name="a")
    _r2, token_b = services.registration_token_create(actor=None, name="b")
    first = register(token_a, "web-01").json()
    assert_status(register(token_b, "web-01"), 400)
    assert_status(heartbeat(first["credential"]), 200)


def test_a_repeat_after_the_window_or_with_a_revoked_token_is_refused(db, settings):
    record, token = services.registration_token_create(actor=None, name="t")
    register(token, "web-01")
    Instance.objects.filter(name="web-01").update(registered_at=timezone.now() - timedelta(seconds=601))
    assert_status(register(token, "web-01"), 400)

    register(token, "web-02")
    services.registration_token_revoke(actor=None, token=record)
    response = register(token, "web-02")
    assert_status(response, 400)
    assert "revoked" in response.json()["message"]
