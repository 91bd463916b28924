import pytest
from django.core.cache import cache
from django.urls import reverse


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def _login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_a_correct_password_signs_in(client, viewer_user):
    response = _login(client, "victor", "pw-victor")
    assert response.status_code == 302


def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_password(client, viewer_user, settings):
    settings.LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        assert _login(client, "victor", "wrong").status_code == 200
    response = _login(client, "victor", "pw-victor")
    assert response.status_code == 200
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_lockout_also_protects_the_admin_login(client, admin_user, settings):
    settings.LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        _login(client, "alice", "wrong")
    response = client.post("/admin/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_a_successful_login_resets_the_username_counter(client, viewer_user, settings):
    settings.LOGIN_MAX_FAILURES = 3
    _login(client, "victor", "wrong")
    _login(client, "victor", "wrong")
    assert _login(client, "victor", "pw-victor").status_code == 302
    client.logout()
    _login(client, "victor", "wrong")
    assert _login(client, "victor", "pw-victor").status_code == 302
