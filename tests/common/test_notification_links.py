"""Notification e-mails carry absolute links (PANEL_URL); the in-app notification keeps the path."""

import pytest
from django.core import mail

from common.models import Notification
from common.services import absolute_url, notify_admins


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
