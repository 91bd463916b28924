"""HTML pages and panels: what people see, who may change things, CSV export, and query counts."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from fleet.scopes import Scope
from governance import services
from governance.models import Policy, PolicyException, Violation
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db


def fleet_of(make_instance, n, group=None):
    for i in range(n):
        make_instance(
            apps=[("telnetd", "1")] if i % 2 else [],
            groups=[group] if group else [],
            tags=["env=production"],
            settings={"ssh.password_auth": True},
        )


@pytest.fixture
def three_policies():
    make_policy()
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    make_policy(name="SSH keys only", policy_type="baseline", rules={"settings": {"ssh.password_auth": False}})


def test_dashboard_shows_fleet_average_severity_counts_and_worst_instances(admin_client, make_instance, three_policies):
    fleet_of(make_instance, 4)
    services.evaluate_fleet()
    services.compliance_snapshot_take()
    response = admin_client.get(reverse("governance:dashboard"))
    assert_status(response, 200)
    html = response.content.decode()
    assert response.context["fleet"]["average"] == pytest.approx(16.6, abs=0.1)
    assert "Average compliance" in html
    assert "2 critical" in html and "4 warning" in html and "4 info" in html
    assert "No telnet" in html and 'data-chart="trend-chart"' in html and 'hx-trigger="every 10s"' in html


def test_dashboard_filters_by_group(admin_client, make_instance, group, three_policies):
    fleet_of(make_instance, 2, group=group)
    make_instance("lonely", apps=[("monitoring-agent", "1")], settings={"ssh.password_auth": False})
    services.evaluate_fleet()
    everything = admin_client.get(reverse("governance:dashboard")).context
    only_web = admin_client.get(reverse("governance:dashboard"), {"group": group.pk}).context
    assert everything["fleet"]["scored"] == 3 and only_web["fleet"]["scored"] == 2
    assert only_web["counts"]["critical"] == 1


def test_dashboard_query_count_does_not_grow_with_the_fleet(
    admin_client, make_instance, three_policies, django_assert_max_num_queries
):
    fleet_of(make_instance, 3)
    services.evaluate_fleet()
    with django_assert_max_num_queries(25) as small:
        admin_client.get(reverse("governance:dashboard"))
    fleet_of(make_instance, 30)
    services.evaluate_fleet()
    with django_assert_max_num_queries(len(small.captured_queries)):
        admin_client.get(reverse("governance:dashboard"))


def test_violation_list_query_count_does_not_grow_with_the_fleet(
    admin_client, make_instance, three_policies, django_assert_max_num_queries
):
    fleet_of(make_instance, 3)
    services.evaluate_fleet()
    with django_assert_max_num_queries(25) as small:
        admin_client.get(reverse("governance:violation_list"))
    fleet_of(make_instance, 30)
    services.evaluate_fleet()
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = admin_client.get(reverse("governance:violation_list"))
    assert len(response.context["page_obj"]) == 50


def test_server_panel_query_count_does_not_grow_with_violations_or_exceptions(
    admin_client, admin_user, make_instance, django_assert_max_num_queries
):
    web = make_instance(apps=[("telnetd", "1")], settings={"ssh.password_auth": True})
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    url = reverse("governance:server_panel", args=[web.pk])

    def add_exempted_baseline(i):
        policy = make_policy(name=f"Baseline {i}", policy_type="baseline", rules={"settings": {f"key{i}": "on"}})
        services.exception_create(
            actor=admin_user,
            policy=policy,
            scope=Scope(kind="instances", instance_ids=(web.pk,)),
            rule_key=f"setting:key{i}",
            justification="Rolled out next quarter",
            expires_at=timezone.now() + timedelta(days=3),
        )

    add_exempted_baseline(0)
    with django_assert_max_num_queries(25) as small:
        admin_client.get(url)
    for i in range(1, 6):
        add_exempted_baseline(i)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = admin_client.get(url)
    html = response.content.decode()
    assert "telnetd 1 installed, blocked" in html and "Rolled out next quarter" in html
    assert html.count("badge-status-exempted") >= 6


def test_server_panel_shows_score_open_violations_history_and_unknown_state(admin_client, make_instance):
    web = make_instance(apps=[])
    make_policy()
    web.apps = [{"name": "monitoring-agent", "version": "1", "running": True}]
    web.save()
    services.evaluate_instance(instance_id=web.pk)
    web.apps = []
    web.save()
    services.evaluate_instance(instance_id=web.pk)
    html = admin_client.get(reverse("governance:server_panel", args=[web.pk])).content.decode()
    assert "0.0%" in html and "monitoring-agent missing" in html and "Violation history" in html
    assert html.count("monitoring-agent missing") == 2  # open now, and once resolved in history


def test_fleet_compliance_panel_shows_the_average(viewer_client, make_instance):
    make_instance(apps=[])
    make_instance(apps=[("monitoring-agent", "1")])
    make_policy()
    html = viewer_client.get(reverse("governance:fleet_compliance_panel")).content.decode()
    assert "Average compliance score" in html and "50.0%" in html


def test_csv_export_contains_the_filtered_violations(admin_client, make_instance, three_policies):
    make_instance("web-a", apps=[("telnetd", "1.2")])
    make_instance("web-b", apps=[("monitoring-agent", "1")], settings={"ssh.password_auth": False})
    services.evaluate_fleet()
    response = admin_client.get(reverse("governance:violation_export"), {"severity": "critical"})
    assert_status(response, 200)
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["id", "severity", "status", "policy", "instance"]
    assert [(r[1], r[3], r[4], r[6]) for r in rows[1:]] == [
        ("critical", "No telnet", "web-a", "telnetd 1.2 installed, blocked")
    ]


def test_admin_creates_a_policy_with_the_typed_rule_editor(admin_client, make_instance):
    make_instance(apps=[("outdated-db", "1.4")])
    response = admin_client.post(
        reverse("governance:policy_create", args=["blocked_apps"]),
        {"name": "Old db", "apps": "outdated-db < 2.0\ninsecure-*", "scope_kind": "all", "enabled": "on"},
    )
    assert response.status_code == 302
    policy = Policy.objects.get(name="Old db")
    assert policy.rules["apps"][0] == {"pattern": "outdated-db", "min_version": None, "below_version": "2.0"}
    assert Violation.objects.filter(policy=policy, status="open").count() == 1


def test_a_bad_rule_line_is_shown_on_the_form_and_nothing_is_saved(admin_client):
    response = admin_client.post(
        reverse("governance:policy_create", args=["required_apps"]),
        {"name": "Agents", "apps": "agent >= ", "scope_kind": "all"},
    )
    assert response.status_code == 200
    assert "Line 1" in response.content.decode()
    assert not Policy.objects.exists()


def test_the_form_preview_shows_who_would_violate_without_saving(admin_client, make_instance):
    make_instance("db-1", apps=[("outdated-db", "1.4")])
    response = admin_client.post(
        reverse("governance:policy_preview", args=["blocked_apps"]),
        {"name": "x", "apps": "outdated-db < 2.0", "scope_kind": "all"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert "1 would violate" in html and "db-1" in html and "outdated-db 1.4 installed, blocked below 2.0" in html
    assert not Policy.objects.exists()


def test_the_edit_form_shows_the_rules_back_as_lines(admin_client):
    policy = make_policy(rules={"apps": [{"name": "agent", "min_version": "2.1", "running": True}]})
    response = admin_client.get(reverse("governance:policy_edit", args=[policy.pk]))
    assert "agent &gt;= 2.1 running" in response.content.decode()


def test_viewers_read_pages_but_cannot_change_policies_or_exceptions(viewer_client, make_instance):
    policy = make_policy()
    for name, args in [
        ("dashboard", []),
        ("policy_list", []),
        ("violation_list", []),
        ("exception_list", []),
        ("score_list", []),
        ("policy_detail", [policy.pk]),
    ]:
        assert_status(viewer_client.get(reverse(f"governance:{name}", args=args)), 200)
    assert viewer_client.get(reverse("governance:policy_create", args=["baseline"])).status_code == 403
    assert viewer_client.post(reverse("governance:policy_toggle", args=[policy.pk])).status_code == 403
    assert viewer_client.post(reverse("governance:policy_delete", args=[policy.pk])).status_code == 403
    assert viewer_client.get(reverse("governance:exception_create")).status_code == 403
    assert Policy.objects.get(pk=policy.pk).enabled


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(reverse("governance:dashboard"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_exception_page_creates_and_revokes(admin_client, make_instance):
    web = make_instance(apps=[])
    policy = make_policy()
    expires = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    missing = admin_client.post(
        reverse("governance:exception_create"),
        {
            "policy": policy.pk,
            "scope_kind": "instances",
            "scope_instances": [web.pk],
            "justification": "",
            "expires_at": expires,
        },
    )
    assert missing.status_code == 200 and not PolicyException.objects.exists()
    response = admin_client.post(
        reverse("governance:exception_create"),
        {
            "policy": policy.pk,
            "scope_kind": "instances",
            "scope_instances": [web.pk],
            "justification": "Decommissioned next week",
            "expires_at": expires,
        },
    )
    assert response.status_code == 302
    assert Violation.objects.get(instance=web).status == "exempted"
    exception = PolicyException.objects.get()
    assert "Decommissioned next week" in admin_client.get(reverse("governance:exception_list")).content.decode()
    admin_client.post(reverse("governance:exception_revoke", args=[exception.pk]))
    assert Violation.objects.get(instance=web).status == "open"


def test_policy_toggle_and_delete_from_the_pages(admin_client, make_instance):
    web = make_instance(apps=[])
    policy = make_policy()
    admin_client.post(reverse("governance:policy_toggle", args=[policy.pk]))
    assert not Policy.objects.get(pk=policy.pk).enabled
    assert Violation.objects.get(instance=web).status == "resolved"
    response = admin_client.post(reverse("governance:policy_delete", args=[policy.pk]), follow=True)
    assert not Policy.objects.exists()
    assert "deleted" in response.content.decode()


def test_htmx_refresh_gets_only_the_live_part_of_the_dashboard_and_violation_list(
    admin_client, make_instance, three_policies
):
    make_instance(apps=[])
    services.evaluate_fleet()
    dashboard = admin_client.get(reverse("governance:dashboard"), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in dashboard and "Average compliance" in dashboard
    violations = admin_client.get(reverse("governance:violation_list"), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in violations and "monitoring-agent missing" in violations


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "javascript:alert(1)",
        # Not paths: redirect() read them as URL pattern names, a NoReverseMatch (500), found by hand.
        "x",
        "a\x00b",
        "9223372036854775808",
        "2026-01-01T00:00:00-17:00",
    ],
)
def test_the_policy_toggle_never_redirects_off_site(admin_client, target):
    policy = make_policy()
    response = admin_client.post(reverse("governance:policy_toggle", args=[policy.pk]), {"next": target})
    assert response.status_code == 302
    assert response["Location"] == policy.get_absolute_url()


def test_the_policy_toggle_follows_a_next_on_this_site(admin_client):
    policy = make_policy()
    response = admin_client.post(
        reverse("governance:policy_toggle", args=[policy.pk]), {"next": "/governance/policies/"}
    )
    assert response["Location"] == "/governance/policies/"
