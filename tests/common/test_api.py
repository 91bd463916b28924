"""Users (admin only), the audit log and one's own notifications over the API."""

from common.choices import Role
from common.models import AuditEntry, Notification, User
from common.services import audit_log, notify_admins
from tests.base import assert_status


def test_an_admin_creates_a_user_with_a_role(admin_api):
    response = admin_api.post(
        "/api/users",
        {"username": "nina", "email": "nina@example.com", "role": "operator", "password": "long-enough-pw-42"},
        format="json",
    )
    assert_status(response, 201)
    assert response.json()["role"] == "operator"
    assert "password" not in response.json()
    user = User.objects.get(username="nina")
    assert user.check_password("long-enough-pw-42")
    assert AuditEntry.objects.filter(action="user.create", object_id=str(user.pk)).exists()


def test_a_weak_password_or_taken_username_is_refused(admin_api, viewer_user):
    response = admin_api.post("/api/users", {"username": "nina", "password": "password"}, format="json")
    assert_status(response, 400)
    assert "password" in response.json()["errors"]
    response = admin_api.post("/api/users", {"username": "victor", "password": "long-enough-pw-42"}, format="json")
    assert_status(response, 400)
    assert "already exists" in response.json()["message"]


def test_an_admin_changes_a_role_and_deactivates_a_user(admin_api, viewer_user):
    response = admin_api.patch(f"/api/users/{viewer_user.pk}", {"role": "operator"}, format="json")
    assert_status(response, 200)
    viewer_user.refresh_from_db()
    assert viewer_user.role == Role.OPERATOR
    assert_status(admin_api.patch(f"/api/users/{viewer_user.pk}", {"is_active": False}, format="json"), 200)
    viewer_user.refresh_from_db()
    assert viewer_user.is_active is False


def test_an_admin_cannot_lock_themselves_out(admin_api, admin_user):
    response = admin_api.patch(f"/api/users/{admin_user.pk}", {"role": "viewer"}, format="json")
    assert_status(response, 400)
    admin_user.refresh_from_db()
    assert admin_user.role == Role.ADMIN


def test_a_superuser_cannot_deactivate_themselves_and_every_problem_comes_at_once(db):
    """The bootstrap admin is a superuser: it may drop its role (it stays an admin), never its account,
    or the panel could be left with no one who can sign in as an admin."""
    from tests.conftest import _api_client, _user

    root = _user("root", Role.ADMIN, is_superuser=True)
    response = _api_client(root).patch(f"/api/users/{root.pk}", {"is_active": False}, format="json")
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["is_active"]
    root.refresh_from_db()
    assert root.is_active

    alice = _user("alice", Role.ADMIN)
    response = _api_client(alice).patch(f"/api/users/{alice.pk}", {"role": "viewer", "is_active": False}, format="json")
    assert_status(response, 400)
    assert sorted(response.json()["errors"]) == ["is_active", "role"]


def test_the_last_active_admin_cannot_be_removed_by_anyone(db):
    from common import services
    from common.exceptions import ApplicationError
    from tests.conftest import _user

    alice, bob = _user("alice", Role.ADMIN), _user("bob", Role.ADMIN)
    services.user_update(actor=alice, user=bob, role=Role.VIEWER, is_active=True)  # alice remains
    try:
        services.user_update(actor=None, user=alice, role=Role.ADMIN, is_active=False)  # a script, say
    except ApplicationError as exc:
        assert exc.field == "is_active" and "last active admin" in exc.message
    else:
        raise AssertionError("the last admin was deactivated")
    alice.refresh_from_db()
    assert alice.is_active and alice.role == Role.ADMIN


def test_only_admins_see_or_change_users(operator_api, viewer_api, viewer_user):
    for client in (operator_api, viewer_api):
        assert_status(client.get("/api/users"), 403)
        assert_status(client.get(f"/api/users/{viewer_user.pk}"), 403)
        assert_status(client.patch(f"/api/users/{viewer_user.pk}", {"role": "admin"}, format="json"), 403)
    viewer_user.refresh_from_db()
    assert viewer_user.role == Role.VIEWER


def test_the_audit_log_is_readable_and_filterable_but_not_writable(viewer_api, admin_user):
    audit_log(actor=admin_user, action="group.create", details={"n": 1})
    audit_log(actor="agent:web-01", action="instance.register")
    body = viewer_api.get("/api/audit?action=group").json()
    assert [(e["actor"], e["action"]) for e in body["results"]] == [("alice", "group.create")]
    assert [e["actor"] for e in viewer_api.get("/api/audit?actor=agent").json()["results"]] == ["agent:web-01"]
    assert viewer_api.post("/api/audit", {"action": "x"}, format="json").status_code in (403, 405)


def test_notifications_are_ones_own_and_can_be_marked_read(admin_api, admin_user, operator_user, viewer_api):
    notify_admins(title="Canary rolled back", body="web canary failed")
    notify_admins(title="GitOps conflict")
    assert viewer_api.get("/api/notifications").json()["count"] == 0
    body = admin_api.get("/api/notifications").json()
    assert [n["title"] for n in body["results"]] == ["GitOps conflict", "Canary rolled back"]
    first = body["results"][0]["id"]
    assert admin_api.post("/api/notifications/mark-read", {"ids": [first]}, format="json").json() == {"marked": 1}
    assert admin_api.post("/api/notifications/mark-read", {}, format="json").json() == {"marked": 1}
    assert not Notification.objects.filter(user=admin_user, read_at__isnull=True).exists()


def test_marking_someone_elses_notification_does_nothing(admin_user, viewer_api):
    notify_admins(title="private")
    note = Notification.objects.get(user=admin_user)
    assert viewer_api.post("/api/notifications/mark-read", {"ids": [note.pk]}, format="json").json() == {"marked": 0}
    assert_status(viewer_api.get(f"/api/notifications/{note.pk}"), 404)
