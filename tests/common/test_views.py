"""Settings > Users, notifications, login and the error pages."""

import html

import pytest
from django.urls import reverse

from common.choices import Role
from common.models import AuditEntry, Notification, User
from common.services import notify_admins

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return html.unescape(response.content.decode())


# --- Users -------------------------------------------------------------------------------------


def test_the_user_directory_is_for_admins_only(viewer_client, operator_user, admin_user, client):
    assert viewer_client.get(reverse("common:user_list")).status_code == 403
    assert 'href="/settings/users/"' not in text(viewer_client.get(reverse("fleet:dashboard")))
    client.force_login(admin_user)
    body = text(client.get(reverse("common:user_list")))
    assert "alice" in body and "oscar" in body and "New user" in body and "Change" in body


def test_only_admins_may_create_or_change_users(client, viewer_user, operator_user, admin_user):
    for user in (viewer_user, operator_user):
        client.force_login(user)
        assert client.get(reverse("common:user_create")).status_code == 403
        assert client.get(reverse("common:user_list")).status_code == 403
        assert (
            client.post(
                reverse("common:user_create"), {"username": "x", "role": "admin", "password": "Str0ng-pass!"}
            ).status_code
            == 403
        )
        assert (
            client.post(reverse("common:user_edit", args=[user.pk]), {"role": "admin", "is_active": "on"}).status_code
            == 403
        )
    assert not User.objects.filter(username="x").exists()
    viewer_user.refresh_from_db()
    assert viewer_user.role == Role.VIEWER


def test_an_admin_creates_a_user_with_a_role(admin_client):
    response = admin_client.post(
        reverse("common:user_create"),
        {"username": "olga", "email": "olga@example.com", "role": "operator", "password": "correct-horse-battery"},
        follow=True,
    )
    assert "User olga created with the Operator role." in text(response)
    user = User.objects.get(username="olga")
    assert user.role == Role.OPERATOR and user.check_password("correct-horse-battery")
    assert AuditEntry.objects.filter(action="user.create", object_repr="olga", actor_label="alice").exists()


def test_a_weak_password_or_taken_name_is_explained(admin_client, viewer_user):
    response = admin_client.post(
        reverse("common:user_create"), {"username": "bob", "role": "viewer", "password": "123"}
    )
    assert "This password is too short" in text(response)
    response = admin_client.post(
        reverse("common:user_create"), {"username": "Victor", "role": "viewer", "password": "correct-horse-battery"}
    )
    assert "A user named 'Victor' already exists." in text(response)
    assert not User.objects.filter(username__in=["bob", "Victor"]).exists()


def test_an_admin_changes_a_role_and_deactivates_a_user(admin_client, viewer_user):
    admin_client.post(reverse("common:user_edit", args=[viewer_user.pk]), {"role": "operator"})
    viewer_user.refresh_from_db()
    assert viewer_user.role == Role.OPERATOR and not viewer_user.is_active
    entry = AuditEntry.objects.get(action="user.update")
    assert entry.details["before"] == {"role": "viewer", "is_active": True}


def test_an_admin_cannot_lock_themselves_out(admin_client, admin_user):
    response = admin_client.post(
        reverse("common:user_edit", args=[admin_user.pk]), {"role": "viewer", "is_active": "on"}
    )
    assert "You cannot remove your own admin role" in text(response)
    response = admin_client.post(reverse("common:user_edit", args=[admin_user.pk]), {"role": "admin"})
    assert "You cannot deactivate your own account." in text(response)
    admin_user.refresh_from_db()
    assert admin_user.role == Role.ADMIN and admin_user.is_active


# --- Notifications -----------------------------------------------------------------------------


def test_notifications_show_only_your_own_and_the_unread_badge(client, admin_user, viewer_user):
    other = User.objects.create_user(username="ann", password="x", role=Role.ADMIN)
    notify_admins(title="Canary web rollout rolled back", body="2 of 3 canaries failed", url="/governance/canary/")
    client.force_login(admin_user)
    body = text(client.get(reverse("common:notification_list")))
    assert "Canary web rollout rolled back" in body and "2 of 3 canaries failed" in body
    assert 'aria-label="Notifications, 1 unread"' in body
    client.force_login(viewer_user)
    body = text(client.get(reverse("common:notification_list")))
    assert "Canary web rollout" not in body and "No notifications" in body
    assert Notification.objects.filter(user=other).count() == 1


def test_marking_one_notification_read_leaves_the_others(admin_client, admin_user):
    notify_admins(title="first")
    notify_admins(title="second")
    first = Notification.objects.get(title="first")
    admin_client.post(reverse("common:notification_mark_read"), {"id": first.pk})
    assert Notification.objects.filter(read_at__isnull=True).values_list("title", flat=True).get() == "second"


def test_mark_all_read_clears_the_badge(admin_client, admin_user):
    notify_admins(title="first")
    notify_admins(title="second")
    response = admin_client.post(reverse("common:notification_mark_read"), follow=True)
    assert "All notifications marked as read." in text(response)
    assert not Notification.objects.filter(read_at__isnull=True).exists()
    assert "unread" not in text(admin_client.get(reverse("fleet:group_list"))).split("<main")[0]


def test_viewers_may_mark_their_own_notifications_read(viewer_client, viewer_user):
    Notification.objects.create(user=viewer_user, title="hello")
    assert viewer_client.post(reverse("common:notification_mark_read")).status_code == 302
    assert not Notification.objects.filter(read_at__isnull=True).exists()


def test_mark_read_never_redirects_off_site(admin_client, admin_user):
    notify_admins(title="x")
    response = admin_client.post(reverse("common:notification_mark_read"), {"next": "https://evil.example/"})
    assert response["Location"] == reverse("common:notification_list")


# --- Login and error pages ---------------------------------------------------------------------


def test_the_login_page_signs_in_and_returns_to_the_page_asked_for(client, admin_user):
    target = reverse("fleet:server_list")
    response = client.get(target)
    assert response.status_code == 302
    login = client.get(response["Location"])
    assert "Sign in" in text(login) and "sidebar" not in text(login)
    response = client.post(reverse("login"), {"username": "alice", "password": "pw-alice", "next": target})
    assert response["Location"] == target


def test_a_wrong_password_is_explained(client, admin_user):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in text(response)


def test_the_403_page_names_the_role_needed(viewer_client):
    response = viewer_client.get(reverse("common:user_create"))
    assert response.status_code == 403
    body = text(response)
    assert "This needs the Admin role." in body and "victor" in body and "sidebar" in body


def test_anonymous_visitors_of_settings_and_notifications_are_sent_to_login(client, db):
    for name in ("common:user_list", "common:user_create", "common:audit_list", "common:notification_list"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), name
    response = client.post(reverse("common:notification_mark_read"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("target", ["x", "a\x00b", "0001-01-01T00:00:00+14:00", "https://evil.example/"])
def test_marking_read_with_a_next_that_is_not_a_path_here_goes_to_the_list(admin_client, target):
    response = admin_client.post(reverse("common:notification_mark_read"), {"next": target})
    assert response.status_code == 302 and response["Location"] == reverse("common:notification_list")
