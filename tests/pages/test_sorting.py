"""Every sortable table: each allowlisted column sorts both ways; anything else is ignored."""

import pytest
from django.urls import reverse
from django.utils import timezone

from common.sorting import Sort, apply_sort, sort_from_request
from fleet import views as fleet_views
from fleet.models import Instance
from governance import services
from governance import views as governance_views
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db

SORTABLE = [
    ("fleet:server_list", fleet_views.ServerListView),
    ("fleet:command_list", fleet_views.CommandListView),
    ("fleet:tag_list", fleet_views.TagListView),
    ("governance:policy_list", governance_views.PolicyListView),
    ("governance:violation_list", governance_views.ViolationListView),
    ("governance:score_list", governance_views.ScoreListView),
]


@pytest.fixture
def violations():
    Instance.objects.create(name="b-host", last_seen_at=timezone.now(), apps=[{"name": "telnetd", "version": "1"}])
    Instance.objects.create(name="a-host", last_seen_at=timezone.now(), settings={"ssh.password_auth": True})
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    make_policy(name="Keys only", policy_type="baseline", rules={"settings": {"ssh.password_auth": False}})
    services.evaluate_fleet()


@pytest.mark.parametrize(("name", "view"), SORTABLE)
def test_every_allowlisted_column_sorts_both_ways(viewer_client, violations, name, view):
    for key in view.sort_fields:
        for param in (key, f"-{key}"):
            response = viewer_client.get(reverse(name), {"sort": param})
            assert_status(response, 200)
            assert response.context["sort"].param == param


def test_violations_sort_by_severity_rank_not_alphabetically(viewer_client, violations):
    response = viewer_client.get(reverse("governance:violation_list"), {"sort": "-severity"})
    assert [v.severity for v in response.context["page_obj"]] == ["critical", "info", "info"]
    response = viewer_client.get(reverse("governance:violation_list"), {"sort": "severity"})
    assert [v.severity for v in response.context["page_obj"]] == ["info", "info", "critical"]
    response = viewer_client.get(reverse("governance:violation_list"), {"sort": "instance"})
    assert [v.instance.name for v in response.context["page_obj"]] == ["a-host", "b-host", "b-host"]
    html = response.content.decode()
    assert 'href="?sort=-instance" aria-sort="ascending"' in html  # a second click sorts descending


def test_a_sort_outside_the_allowlist_is_ignored(rf):
    allowed = {"name": "name"}
    assert sort_from_request(rf.get("/", {"sort": "-password"}), allowed) == Sort()
    assert sort_from_request(rf.get("/", {"sort": "-name"}), allowed) == Sort("name", True)
    qs = Instance.objects.all()
    assert apply_sort(qs, Sort(), allowed) is qs


def test_the_filters_keep_the_sort_and_the_headers_keep_the_filters(viewer_client, violations):
    html = viewer_client.get(reverse("governance:violation_list"), {"sort": "-first", "severity": "critical"}).content
    html = html.decode()
    assert '<input type="hidden" name="sort" value="-first">' in html
    assert "?sort=instance&amp;severity=critical" in html
