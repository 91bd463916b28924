"""Settings > API token: every user creates, regenerates and revokes their own REST API token;
admins revoke anyone's from the user list."""

import hashlib
import html
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from common.models import ApiToken, AuditEntry
from common.services import api_token_authenticate
from tests.base import api_key_for, assert_status

pytestmark = pytest.mark.django_db

PAGE = reverse("common:api_token")
REGENERATE = reverse("common:api_token_regenerate")
REVOKE = reverse("common:api_token_revoke")
API_URL = reverse("fleet-api:instance-list")


def text(response) -> str:
    return html.unescape(response.content.decode())


def api_status(key: str) -> int:
    """Status of an API call carrying only this bearer token (no session)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.get(API_URL).status_code


def create_token(client) -> str:
    response = client.post(PAGE)
    assert_status(response, 200)
    return response.context["new_key"]


def test_a_viewer_creates_a_token_and_calls_the_api_with_it(viewer_client, viewer_user):
    body = text(viewer_client.get(PAGE))
    assert "No API token" in body and "Create token" in body and "Regenerate" not in body
    key = create_token(viewer_client)
    assert api_token_authenticate(key).user == viewer_user
    assert api_status(key) == 200


def test_the_key_is_shown_once_with_a_usage_example_and_never_again(viewer_client):
    response = viewer_client.post(PAGE)
    key = response.context["new_key"]
    body = text(response)
    assert "API token created." in body and "It is shown only once" in body
    assert f'value="{key}"' in body and 'data-copy-target="api-token-key"' in body
    assert f'curl -H "Authorization: Bearer {key}" http://testserver{API_URL}' in body
    assert response["Cache-Control"] == "no-store"
    assert key not in json.dumps(dict(viewer_client.session))  # not carried to a later request

    later = text(viewer_client.get(PAGE))
    assert key not in later
    assert "created" in later and "Regenerate" in later and "Revoke" in later and "Create token" not in later
    assert "Bearer &lt;your token&gt;" in viewer_client.get(PAGE).content.decode()


def test_regenerate_asks_first_then_the_old_key_stops_working(operator_client, operator_user):
    old = create_token(operator_client)
    confirm = operator_client.get(REGENERATE)
    assert "Regenerate API token" in text(confirm) and "csrfmiddlewaretoken" in text(confirm)
    assert api_status(old) == 200  # a GET changes nothing

    response = operator_client.post(REGENERATE)
    assert_status(response, 200)
    new = response.context["new_key"]
    assert new != old and new in text(response) and old not in text(response)
    assert "API token regenerated." in text(response)
    assert api_status(old) == 401
    assert api_status(new) == 200


def test_revoke_asks_first_then_the_key_is_refused(admin_client, admin_user):
    key = create_token(admin_client)
    assert "Revoke API token" in text(admin_client.get(REVOKE))
    assert ApiToken.objects.filter(user=admin_user).exists()

    response = admin_client.post(REVOKE, follow=True)
    body = text(response)
    assert "API token revoked." in body and "No API token" in body
    assert not ApiToken.objects.filter(user=admin_user).exists()
    assert api_status(key) == 401


def test_a_second_create_does_not_replace_a_working_token(viewer_client):
    key = create_token(viewer_client)
    response = viewer_client.post(PAGE, follow=True)  # e.g. a stale tab or a double submit
    assert "There is already an API token; regenerate it" in text(response)
    assert "new_key" not in response.context or not response.context["new_key"]
    assert api_status(key) == 200


def test_regenerate_or_revoke_without_a_token_explains_and_changes_nothing(viewer_client, viewer_user):
    assert "You have no API token." in text(viewer_client.get(REGENERATE, follow=True))
    assert "There is no API token to regenerate" in text(viewer_client.post(REGENERATE, follow=True))
    assert "There is no API token of victor to revoke" in text(viewer_client.post(REVOKE, follow=True))
    assert not ApiToken.objects.filter(user=viewer_user).exists()
    assert not AuditEntry.objects.filter(action__startswith="api_token.").exists()


def test_the_page_only_ever_touches_the_signed_in_users_token(client, viewer_user, operator_user):
    victims_key = api_key_for(viewer_user)
    client.force_login(operator_user)
    assert victims_key not in text(client.get(PAGE))
    # Naming another user in the request has no effect: the views act on request.user only.
    for url in (PAGE, REGENERATE, REVOKE):
        client.post(url, {"user": viewer_user.pk, "pk": viewer_user.pk, "user_id": viewer_user.pk})
    # The admin-only revoke on the user list is not open to others.
    assert client.get(reverse("common:user_token_revoke", args=[viewer_user.pk])).status_code == 403
    assert client.post(reverse("common:user_token_revoke", args=[viewer_user.pk])).status_code == 403
    assert api_status(victims_key) == 200


def test_every_role_finds_the_page_under_settings(client, viewer_user, operator_user, admin_user):
    for user in (viewer_user, operator_user, admin_user):
        client.force_login(user)
        response = client.get(PAGE)
        assert_status(response, 200)
        assert f'class="nav-link active" href="{PAGE}">API Token</a>' in text(response)
        assert f'href="{PAGE}"' in text(client.get(reverse("fleet:dashboard")))


def test_anonymous_visitors_are_sent_to_login(client, db):
    for url in (PAGE, REGENERATE, REVOKE):
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    assert not ApiToken.objects.exists()


def test_posts_without_a_csrf_token_are_refused(viewer_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(viewer_user)
    assert browser.post(PAGE).status_code == 403
    assert not ApiToken.objects.filter(user=viewer_user).exists()
    key = api_key_for(viewer_user)
    for url in (REGENERATE, REVOKE):
        assert browser.post(url).status_code == 403
    assert api_token_authenticate(key).user == viewer_user


def test_every_change_is_audited_without_the_key(viewer_client, viewer_user):
    first = create_token(viewer_client)
    second = viewer_client.post(REGENERATE).context["new_key"]
    viewer_client.post(REVOKE)
    entries = list(AuditEntry.objects.filter(action__startswith="api_token.").order_by("id"))
    assert [e.action for e in entries] == ["api_token.create", "api_token.regenerate", "api_token.revoke"]
    for entry in entries:
        assert entry.actor == viewer_user and entry.object_type == "common.user"
        assert entry.object_id == str(viewer_user.pk) and entry.object_repr == "victor"
        stored = json.dumps([entry.actor_label, entry.object_id, entry.object_repr, entry.details])
        assert first not in stored and second not in stored
    assert "victor" in text(viewer_client.get(reverse("common:audit_list")))


# --- Admins, on the user list --------------------------------------------------------------------


def test_an_admin_revokes_another_users_token_from_the_user_list(admin_client, admin_user, viewer_user, operator_user):
    key = api_key_for(viewer_user)
    url = reverse("common:user_token_revoke", args=[viewer_user.pk])
    users = text(admin_client.get(reverse("common:user_list")))
    assert f'href="{url}"' in users and key not in users
    assert reverse("common:user_token_revoke", args=[operator_user.pk]) not in users  # no token, no action

    assert "Revoke the API token of victor?" in text(admin_client.get(url))
    response = admin_client.post(url, follow=True)
    assert "API token of victor revoked." in text(response)
    assert api_status(key) == 401
    entry = AuditEntry.objects.get(action="api_token.revoke")
    assert entry.actor == admin_user and entry.object_repr == "victor" and key not in json.dumps(entry.details)


# --- At rest and on the wire -------------------------------------------------------------------------


def test_the_database_never_holds_the_key_only_the_hash_of_its_secret(viewer_client, viewer_user):
    key = create_token(viewer_client)
    prefix, key_id, secret = key.split("_", 2)
    assert prefix == "gov" and len(secret) >= 43  # secrets.token_urlsafe(32)
    rows = list(ApiToken.objects.values())
    assert len(rows) == 1 and rows[0]["key_id"] == key_id and rows[0]["user_id"] == viewer_user.pk
    assert rows[0]["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(rows, default=str)
    # Nowhere else either: not in the session, the audit log or any other table.
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert secret not in dump.getvalue() and key not in dump.getvalue()


def test_a_tampered_secret_with_a_valid_key_id_is_refused(viewer_client):
    key = create_token(viewer_client)
    prefix, key_id, secret = key.split("_", 2)
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    for forged in (
        f"{prefix}_{key_id}_{flipped}",
        f"{prefix}_{key_id}_",
        f"{prefix}_{key_id}",
        f"xyz_{key_id}_{secret}",
    ):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
        response = client.get(API_URL)
        assert response.status_code == 401, forged
        assert response.json() == {"error": "authentication_failed", "message": "Invalid token.", "errors": {}}
        assert response["WWW-Authenticate"] == "Bearer"
    assert api_status(key) == 200


def test_a_deactivated_users_token_is_refused_until_the_account_is_active_again(viewer_user):
    key = api_key_for(viewer_user)
    viewer_user.is_active = False
    viewer_user.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.get(API_URL)
    assert response.status_code == 401
    assert response.json() == {"error": "authentication_failed", "message": "User inactive or deleted.", "errors": {}}
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401
    viewer_user.is_active = True
    viewer_user.save()
    assert api_status(key) == 200


def test_last_use_is_recorded_at_most_once_a_minute(viewer_user):
    key = api_key_for(viewer_user)
    assert ApiToken.objects.get(user=viewer_user).last_used_at is None
    assert api_status(key) == 200
    first = ApiToken.objects.get(user=viewer_user).last_used_at
    assert first is not None
    assert api_status(key) == 200
    assert ApiToken.objects.get(user=viewer_user).last_used_at == first  # no write within the minute
    ApiToken.objects.filter(user=viewer_user).update(last_used_at=first - timedelta(seconds=61))
    assert api_status(key) == 200
    assert ApiToken.objects.get(user=viewer_user).last_used_at > first - timedelta(seconds=61)


def test_the_schema_still_documents_bearer_authentication(viewer_api):
    schemes = viewer_api.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["securitySchemes"]
    assert schemes["tokenAuth"] == {"type": "http", "scheme": "bearer"}


# --- Command and admin ----------------------------------------------------------------------------


def test_the_command_prints_a_working_key_once_and_replaces_it_only_when_asked(viewer_user):
    out = StringIO()
    call_command("create_api_token", "victor", stdout=out)
    key = out.getvalue().strip()
    assert api_status(key) == 200
    with pytest.raises(CommandError, match="already an API token"):
        call_command("create_api_token", "victor", stdout=StringIO())
    assert api_status(key) == 200

    out = StringIO()
    call_command("create_api_token", "victor", "--regenerate", stdout=out)
    new = out.getvalue().strip()
    assert new != key and api_status(new) == 200 and api_status(key) == 401
    actions = list(AuditEntry.objects.values_list("actor_label", "action").order_by("id"))
    assert actions == [("manage.py", "api_token.create"), ("manage.py", "api_token.regenerate")]
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_token", "nobody")


def test_the_admin_lists_tokens_read_only_without_their_hash(admin_client, viewer_user):
    api_key_for(viewer_user)
    token = ApiToken.objects.get(user=viewer_user)
    listing = text(admin_client.get(reverse("admin:common_apitoken_changelist")))
    assert "victor" in listing and token.key_id in listing and token.secret_hash not in listing
    detail = admin_client.get(reverse("admin:common_apitoken_change", args=[token.pk]))
    assert_status(detail, 200)
    assert token.key_id in text(detail) and token.secret_hash not in text(detail)
    assert admin_client.get(reverse("admin:common_apitoken_add")).status_code == 403
    assert admin_client.post(reverse("admin:common_apitoken_delete", args=[token.pk])).status_code == 403
    assert admin_client.get("/admin/authtoken/tokenproxy/").status_code == 404  # DRF's plaintext admin is gone
