"""The lists' filter bars look and work alike: "Any", readable labels, instances by name, date pickers."""

import pytest
from django.urls import reverse
from django.utils import timezone

from common.services import audit_log
from fleet.models import Instance
from governance import services
from governance.models import Violation
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db

LISTS = [
    "fleet:server_list",
    "fleet:command_list",
    "governance:policy_list",
    "governance:violation_list",
    "governance:exception_list",
    "governance:score_list",
    "common:audit_list",
]


def page(client, name, params=None):
    response = client.get(reverse(name), params or {})
    assert_status(response, 200)
    return response.content.decode()


@pytest.mark.parametrize("name", LISTS)
def test_every_filter_bar_says_any_and_no_label_is_invalid(admin_client, name):
    html = page(admin_client, name)
    assert "---------" not in html and "[invalid name]" not in html
    assert ">Unknown<" not in html


def test_the_policies_enabled_filter_offers_any_yes_and_no(admin_client):
    html = page(admin_client, "governance:policy_list")
    select = html.split('name="enabled"')[1].split("</select>")[0]
    assert ">Any<" in select and ">Yes<" in select and ">No<" in select


def test_violations_filter_by_instance_name_with_suggestions(admin_client, viewer_client):
    for name in ("web-01", "web-02"):
        Instance.objects.create(name=name, last_seen_at=timezone.now(), apps=[{"name": "telnetd", "version": "1"}])
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    services.evaluate_fleet()  # on-commit callbacks never run inside the test's transaction
    assert Violation.objects.count() == 2
    response = admin_client.get(reverse("governance:violation_list"), {"instance": "WEB-02"})
    assert [v.instance.name for v in response.context["page_obj"]] == ["web-02"]
    web1 = Instance.objects.get(name="web-01")
    by_id = admin_client.get(reverse("governance:violation_list"), {"instance": web1.pk})
    assert [v.instance.name for v in by_id.context["page_obj"]] == ["web-01"]  # ids still work (API, links)
    html = page(admin_client, "governance:violation_list")
    box = html.split('name="instance"')[1].split(">")[0]
    assert 'list="id_instance-options"' in box and reverse("fleet:server_names") in box
    options = viewer_client.get(reverse("fleet:server_names"), {"instance": "02"}).content.decode()
    assert options == '<option value="web-02"></option>'


def test_the_server_names_endpoint_needs_a_signed_in_user(client):
    assert client.get(reverse("fleet:server_names")).status_code == 302


def test_the_audit_log_filters_dates_with_pickers_and_links_its_objects(admin_client, admin_user):
    instance = Instance.objects.create(name="db-01")
    audit_log(actor=admin_user, action="instance.update", obj=instance)
    gone = Instance.objects.create(name="gone-01")
    audit_log(actor=admin_user, action="instance.delete", obj=gone)
    gone.delete()
    html = page(admin_client, "common:audit_list")
    assert html.count('type="datetime-local"') == 2
    assert f'<a href="{instance.get_absolute_url()}">db-01</a>' in html
    assert ">gone-01</a>" not in html and "gone-01" in html
    today = timezone.localtime().strftime("%Y-%m-%dT00:00")
    filtered = admin_client.get(reverse("common:audit_list"), {"since": today})
    assert len(filtered.context["entries"]) == 2
    future = admin_client.get(reverse("common:audit_list"), {"since": "2999-01-01T00:00"})
    assert len(future.context["entries"]) == 0


def test_the_server_page_panel_lists_the_rule_of_each_open_violation(viewer_client):
    instance = Instance.objects.create(
        name="web-01", last_seen_at=timezone.now(), apps=[{"name": "telnetd", "version": "1"}]
    )
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    services.evaluate_fleet()
    violation = Violation.objects.get()
    html = viewer_client.get(reverse("governance:server_panel", args=[instance.pk])).content.decode()
    header = html.split("<thead>")[1].split("</thead>")[0]
    assert "<th>Rule</th>" in header
    assert violation.rule in html and violation.rule_key in html


def test_every_canary_endpoint_has_a_summary_in_the_api_docs(admin_client):
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    canary = {p: ops for p, ops in schema["paths"].items() if p.startswith("/api/fleet/canary")}
    assert canary
    for path, operations in canary.items():
        for method, operation in operations.items():
            if method in ("get", "post", "put", "patch", "delete"):
                assert operation.get("summary"), f"{method.upper()} {path} has no summary"


def test_the_notification_counter_refreshes_itself(viewer_client, viewer_user):
    from common.models import Notification

    html = viewer_client.get(reverse("fleet:dashboard")).content.decode()
    bell = html.split('id="notification-bell"')[1].split(">")[0]
    assert f'hx-get="{reverse("common:notification_bell")}"' in bell and 'hx-trigger="every 30s"' in bell
    Notification.objects.create(user=viewer_user, title="Canary rolled back")
    part = viewer_client.get(reverse("common:notification_bell"), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and "1 unread" in part


@pytest.mark.parametrize("typed", ["²", "١٢", "0" * 30, "web-01\u00a0"])
def test_an_instance_filter_of_odd_digits_is_a_name_not_a_crash(admin_client, admin_api, typed):
    assert_status(admin_client.get(reverse("governance:violation_list"), {"instance": typed}), 200)
    assert admin_api.get("/api/governance/violations", {"instance": typed}).status_code == 200
    assert_status(admin_client.get(reverse("fleet:command_list"), {"instance": typed}), 200)
