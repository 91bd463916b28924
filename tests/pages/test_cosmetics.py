"""Small things a person notices: relative times said one way, the OS chart in version order, the
compliance trend from the first day, the canary form's fields for the chosen selection."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from common.templatetags.ui import ago
from fleet.models import Instance
from fleet.views import os_chart
from governance.models import ComplianceSnapshot

NOW = timezone.now()


@pytest.mark.parametrize(
    ("delta", "said"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=1), "1 second ago"),
        (timedelta(seconds=2), "2 seconds ago"),
        (timedelta(seconds=59), "59 seconds ago"),
        (timedelta(minutes=3, seconds=10), "3\xa0minutes ago"),
        (timedelta(hours=5, minutes=3), "5\xa0hours ago"),
        (timedelta(seconds=-30), "in 30 seconds"),
        (timedelta(days=-2, hours=-1), "in 2\xa0days"),
        # Rounded to the unit said, not truncated: a year less a few seconds is a year, not "11 months".
        (timedelta(days=-365, seconds=5), "in 1\xa0year"),
        (timedelta(hours=-2, seconds=20), "in 2\xa0hours"),
        (timedelta(hours=1, minutes=59), "1\xa0hour ago"),
        (timedelta(days=200), "6\xa0months ago"),
    ],
)
def test_relative_times_read_the_same_everywhere(delta, said):
    assert ago(NOW - delta, NOW) == said


def test_the_license_page_says_a_licence_of_a_year_expires_in_a_year(client, viewer_user, install_license):
    install_license("enterprise", days=365)
    client.force_login(viewer_user)
    text = client.get(reverse("fleet:license")).content.decode()
    assert "(in 1\xa0year)" in text and "11\xa0months" not in text


def test_relative_time_of_nothing_is_empty():
    assert ago(None) == "" and ago("") == ""


def test_the_os_chart_is_in_version_order_with_unparsable_versions_last():
    chart = os_chart([("24.04", 9), ("unknown", 5), ("22.04.3", 4), ("24.04.10", 2), ("24.04.2", 1)])
    assert chart["data"]["labels"] == ["22.04.3", "24.04", "24.04.2", "24.04.10", "unknown"]
    assert chart["data"]["datasets"][0]["data"] == [4, 9, 1, 2, 5]


@pytest.mark.django_db
def test_the_dashboard_says_seconds_not_zero_minutes(viewer_client):
    Instance.objects.create(name="web-01", status="online", last_seen_at=timezone.now() - timedelta(seconds=2))
    html = viewer_client.get(reverse("fleet:dashboard")).content.decode()
    assert "0\xa0minutes" not in html and "0 minutes" not in html
    assert "seconds ago" in html


@pytest.mark.django_db
def test_the_first_governance_dashboard_load_of_a_day_takes_a_snapshot_so_the_trend_has_a_point(
    viewer_client, django_capture_on_commit_callbacks, settings
):
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            viewer_client.get(reverse("governance:dashboard"))
        assert len(callbacks) == 1
        assert ComplianceSnapshot.objects.filter(date=timezone.localdate(), kind="fleet").count() == 1
        with django_capture_on_commit_callbacks(execute=True) as again:
            viewer_client.get(reverse("governance:dashboard"))
            viewer_client.get(reverse("governance:dashboard"), HTTP_HX_REQUEST="true")
        assert again == []  # taken once a day; the live refreshes never queue one
    finally:
        app.conf.task_always_eager = False


@pytest.mark.django_db
def test_the_canary_form_shows_the_percentage_or_the_instance_picker_for_the_selection(
    operator_client, install_license
):
    install_license("enterprise")
    html = operator_client.get(reverse("canary:create")).content.decode()
    assert 'data-kind-picker="selection"' in html
    assert html.count('data-kinds="percentage"') == 1 and html.count('data-kinds="instances"') == 1
    percentage = html.split('data-kinds="percentage"')[1].split("</div></div>")[0]
    assert 'name="canary_percentage"' in percentage


def test_the_notifications_empty_state_speaks_to_the_person(client, admin_user, viewer_user):
    client.force_login(viewer_user)
    text = client.get(reverse("common:notification_list")).content.decode()
    assert "notified to administrators" in text and "need your attention" not in text
    client.force_login(admin_user)
    text = client.get(reverse("common:notification_list")).content.decode()
    assert "need your attention" in text


def test_the_server_panel_offers_an_exception_as_a_small_button_that_does_not_wrap(client, admin_user, site):
    client.force_login(admin_user)
    html = client.get(reverse("governance:server_panel", args=[site["server"].pk])).content.decode()
    assert 'class="btn btn-sm btn-outline-secondary text-nowrap"' in html and ">Add exception</a>" in html
    assert "Exempt…" not in html
