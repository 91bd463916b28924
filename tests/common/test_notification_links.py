"""Notification e-mails carry absolute links (PANEL_URL); the in-app notification keeps the path."""

import pytest
from django.core import mail

from common.choices import Role
from common.models import Notification, User
from common.services import absolute_url, notify_admins, notify_role


def test_a_notification_email_links_to_the_panel_by_its_full_address(
    admin_user, settings, django_capture_on_commit_callbacks
):
    settings.PANEL_URL = "https://panel.example.com"
    with django_capture_on_commit_callbacks(execute=True):
        notify_admins(title="Canary rolled back", body="2 of 3 canaries failed", url="/governance/canary/7/")
    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    assert "https://panel.example.com/governance/canary/7/" in message.body
    assert Notification.objects.get().url == "/governance/canary/7/"  # the page's own link stays relative


def test_a_role_notification_reaches_that_role_and_the_ones_above_it_by_mail_too(
    admin_user, operator_user, viewer_user, outsider_user, django_capture_on_commit_callbacks
):
    # victor (viewer) and eve (inactive) get nothing; root, a superuser whose role says viewer, does.
    User.objects.create_superuser("root", "root@example.com", "pw", role=Role.VIEWER)
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_role(role=Role.OPERATOR, title="Step 1 waiting for approval") == 3
        assert notify_admins(title="Admins only") == 2
    by_title = {
        t: sorted(Notification.objects.filter(title=t).values_list("user__username", flat=True))
        for t in ("Step 1 waiting for approval", "Admins only")
    }
    assert by_title == {"Step 1 waiting for approval": ["alice", "oscar", "root"], "Admins only": ["alice", "root"]}
    assert sorted(mail.outbox[0].to) == ["alice@example.com", "oscar@example.com", "root@example.com"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/servers/3/", "https://panel.example.com/servers/3/"),
        ("https://elsewhere.example.com/x", "https://elsewhere.example.com/x"),  # already absolute
        ("//evil.example.com/x", "//evil.example.com/x"),  # not a panel path: left alone
        ("", ""),
    ],
)
def test_absolute_url(settings, url, expected):
    settings.PANEL_URL = "https://panel.example.com"
    assert absolute_url(url) == expected


def test_without_panel_url_the_path_is_kept(settings):
    settings.PANEL_URL = ""
    assert absolute_url("/servers/3/") == "/servers/3/"
