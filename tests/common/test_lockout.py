"""Sign-in lockout (django-axes, common/auth.py): per (username, client address) and per username,
the client address trusted from X-Forwarded-For only behind TRUSTED_PROXIES, admins unlock (audited)."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from common.auth import client_address
from common.models import AuditEntry

PROXY = "10.0.0.2"
CLIENT = "203.0.113.5"
OTHER_CLIENT = "198.51.100.7"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_MAX_FAILURES = 5
    settings.LOGIN_MAX_FAILURES_PER_USERNAME = 12
    settings.LOGIN_LOCKOUT_SECONDS = 300
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]


def _login(client, username, password, *, via_proxy_for=None, peer="127.0.0.1", path=None, **headers):
    if via_proxy_for is not None:
        peer, headers["HTTP_X_FORWARDED_FOR"] = PROXY, via_proxy_for
    data = {"username": username, "password": password}
    return client.post(path or reverse("login"), data, REMOTE_ADDR=peer, **headers)


def _fail(client, username, times, **kwargs):
    return [_login(client, username, "wrong", **kwargs).status_code for _ in range(times)]


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_a_correct_password_signs_in(client, viewer_user):
    assert _login(client, "victor", "pw-victor").status_code == 302
    assert _signed_in(client)


def test_repeated_wrong_passwords_lock_the_pair_even_for_the_right_password(client, viewer_user):
    assert _fail(client, "victor", 5) == [200, 200, 200, 200, 429]
    response = _login(client, "victor", "pw-victor")
    assert response.status_code == 429
    assert "Too many failed sign-in attempts. Try again in 5 minutes." in response.content.decode()
    assert 'value="victor"' in response.content.decode()  # the sign-in form, as submitted
    assert not _signed_in(client)


def test_the_lockout_also_protects_the_admin_login(client, admin_user):
    _fail(client, "alice", 5, path="/admin/login/")
    response = client.post("/admin/login/", {"username": "alice", "password": "pw-alice"}, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 429
    assert not _signed_in(client)
    # One count for both doors: the login page is locked too.
    assert _login(client, "alice", "pw-alice").status_code == 429


def test_failures_on_the_login_page_lock_the_admin_login(client, admin_user):
    _fail(client, "alice", 5)
    response = client.post("/admin/login/", {"username": "alice", "password": "pw-alice"}, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 429
    assert not _signed_in(client)


def test_behind_a_trusted_proxy_failures_lock_one_user_from_one_client_address_only(client, viewer_user, admin_user):
    assert _fail(client, "victor", 5, via_proxy_for=CLIENT)[-1] == 429
    assert _login(client, "victor", "pw-victor", via_proxy_for=CLIENT).status_code == 429
    # Another user behind the same proxy, from the same address: not locked.
    assert _login(client, "alice", "pw-alice", via_proxy_for=CLIENT).status_code == 302
    client.logout()
    # The same user from another address behind the same proxy: not locked.
    assert _login(client, "victor", "pw-victor", via_proxy_for=OTHER_CLIENT).status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) <= {CLIENT}


def test_a_chain_of_trusted_proxies_counts_the_first_untrusted_address(client, viewer_user):
    chain = f"{CLIENT}, 10.1.2.3"  # client -> edge proxy (10.1.2.3) -> inner proxy (peer)
    _fail(client, "victor", 5, via_proxy_for=chain)
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [CLIENT]


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(client, viewer_user):
    # A client that forges a new address on every try is still counted at its own address...
    forged = [
        _login(client, "victor", "wrong", peer=OTHER_CLIENT, HTTP_X_FORWARDED_FOR=f"192.0.2.{i}") for i in range(5)
    ]
    assert forged[-1].status_code == 429
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [OTHER_CLIENT]
    # ...and cannot aim a lockout at someone else's address either.
    assert _login(client, "victor", "pw-victor", via_proxy_for="192.0.2.1").status_code == 302


def test_a_user_locked_at_one_address_is_not_locked_by_hammering_on(client, viewer_user):
    """Failures while locked out are not counted: one address cannot push a username over its own limit."""
    _fail(client, "victor", 30, via_proxy_for=CLIENT)
    assert AccessAttempt.objects.get().failures_since_start == 5
    assert _login(client, "victor", "pw-victor", via_proxy_for=OTHER_CLIENT).status_code == 302


def test_failures_from_many_addresses_lock_the_username_everywhere(client, viewer_user, admin_user):
    for i in range(3):
        _fail(client, "victor", 4, via_proxy_for=f"192.0.2.{i}")  # 12 = LOGIN_MAX_FAILURES_PER_USERNAME
    assert _login(client, "victor", "pw-victor", via_proxy_for=OTHER_CLIENT).status_code == 429
    assert _login(client, "alice", "pw-alice", via_proxy_for=OTHER_CLIENT).status_code == 302


def test_a_successful_login_resets_the_counter(client, viewer_user):
    _fail(client, "victor", 4)
    assert _login(client, "victor", "pw-victor").status_code == 302
    client.logout()
    assert _fail(client, "victor", 4) == [200] * 4
    assert _login(client, "victor", "pw-victor").status_code == 302


def test_the_lockout_ends_after_the_lockout_period(client, viewer_user):
    _fail(client, "victor", 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(seconds=301))
    assert _login(client, "victor", "pw-victor").status_code == 302


def test_an_admin_unlocks_a_user_from_the_users_admin_and_it_is_audited(client, viewer_user, admin_user):
    _fail(client, "victor", 5, via_proxy_for=CLIENT)
    _fail(client, "victor", 5, via_proxy_for=OTHER_CLIENT)
    admin = type(client)()
    admin.force_login(admin_user)
    changelist = reverse("admin:common_user_changelist")
    response = admin.post(changelist, {"action": "unlock_sign_in", "_selected_action": [viewer_user.pk]}, follow=True)
    assert response.status_code == 200
    assert "Sign-in unlocked (2 failed-attempt record(s) cleared)." in response.content.decode()
    assert not AccessAttempt.objects.exists()
    entry = AuditEntry.objects.get(action="user.unlock")
    assert (entry.actor, entry.object_id, entry.details["cleared"]) == (admin_user, str(viewer_user.pk), 2)
    assert _login(client, "victor", "pw-victor", via_proxy_for=CLIENT).status_code == 302


def test_the_failed_attempts_admin_lists_lockouts_and_unlocks_without_deleting_unaudited(
    client, viewer_user, admin_user
):
    _fail(client, "victor", 5, via_proxy_for=CLIENT)
    admin = type(client)()
    admin.force_login(admin_user)
    changelist = reverse("admin:axes_accessattempt_changelist")
    page = admin.get(changelist)
    assert page.status_code == 200
    assert CLIENT in page.content.decode()
    assert "delete_selected" not in page.content.decode()
    attempt = AccessAttempt.objects.get()
    admin.post(changelist, {"action": "unlock_sign_in", "_selected_action": [attempt.pk]})
    assert not AccessAttempt.objects.exists()
    assert AuditEntry.objects.filter(action="user.unlock", actor=admin_user).count() == 1


def test_a_viewer_cannot_unlock(client, viewer_user, admin_user):
    _fail(client, "alice", 5)
    client.force_login(viewer_user)
    changelist = reverse("admin:common_user_changelist")
    response = client.post(changelist, {"action": "unlock_sign_in", "_selected_action": [admin_user.pk]})
    assert response.status_code == 302 and "/login/" in response["Location"]  # not staff: no admin at all
    assert AccessAttempt.objects.exists()


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", "192.0.2.1", "198.51.100.7"),  # untrusted peer: header ignored
        (PROXY, CLIENT, CLIENT),
        (PROXY, f"192.0.2.1, {CLIENT}", CLIENT),  # the left entry was written by the client
        (PROXY, f"{CLIENT}, 10.9.9.9", CLIENT),  # trusted hops are skipped from the right
        (PROXY, "", PROXY),
        (PROXY, "not-an-address", PROXY),
        (PROXY, "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # only proxies: the farthest one
    ],
)
def test_the_client_address(settings, peer, forwarded, expected):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = RequestFactory().get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def test_no_trusted_proxies_means_the_peer_address(settings):
    settings.TRUSTED_PROXIES = []
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT)
    assert client_address(request) == PROXY


def test_api_throttles_read_the_client_address_the_same_way(settings):
    from rest_framework.request import Request

    from common.throttling import ScopedFixedWindowThrottle

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    throttle = ScopedFixedWindowThrottle()
    forged = Request(RequestFactory().post("/", REMOTE_ADDR=OTHER_CLIENT, HTTP_X_FORWARDED_FOR="192.0.2.77"))
    assert throttle.get_ident(forged) == OTHER_CLIENT
    proxied = Request(RequestFactory().post("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT))
    assert throttle.get_ident(proxied) == CLIENT
