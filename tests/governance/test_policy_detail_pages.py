"""The policy page as a person sees it: small header buttons like every other page, compliance over time as
a line once there are two days (a table of the last days below it), words when there is no day yet."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from governance.models import ComplianceSnapshot

from .conftest import make_policy

pytestmark = pytest.mark.django_db


def snapshot(policy, days_ago, score):
    ComplianceSnapshot.objects.create(
        date=timezone.localdate() - timedelta(days=days_ago),
        kind="policy",
        policy=policy,
        label=policy.name,
        score=score,
        instances=4,
    )


def chart_of(html: str) -> dict:
    start = html.index('<script id="policy-trend-chart" type="application/json">') + len(
        '<script id="policy-trend-chart" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_the_policy_page_draws_compliance_over_time_oldest_day_first(admin_client):
    policy = make_policy(name="Agent")
    for days_ago, score in ((2, 50.0), (1, 75.0), (0, 100.0)):
        snapshot(policy, days_ago, score)
    html = admin_client.get(policy.get_absolute_url()).content.decode()
    chart = chart_of(html)
    assert chart["data"]["datasets"][0]["data"] == [50.0, 75.0, 100.0]
    assert chart["data"]["labels"][0] == (timezone.localdate() - timedelta(days=2)).isoformat()
    assert 'id="policy-trend"' in html and "75.0%" in html


def test_one_day_is_a_table_row_without_a_line_and_no_day_says_when_the_first_comes(admin_client):
    policy = make_policy(name="Agent")
    html = admin_client.get(policy.get_absolute_url()).content.decode()
    assert "No daily snapshot yet: the first is taken today" in html and "policy-trend-chart" not in html
    snapshot(policy, 0, 80.0)
    html = admin_client.get(policy.get_absolute_url()).content.decode()
    assert "80.0%" in html and "policy-trend-chart" not in html


def test_the_policy_header_buttons_are_small_like_the_other_pages(admin_client):
    policy = make_policy(name="Agent")
    html = admin_client.get(policy.get_absolute_url()).content.decode()
    assert f'<a class="btn btn-sm btn-outline-secondary" href="/governance/policies/{policy.pk}/edit/">Edit</a>' in html
    assert '<button class="btn btn-sm btn-outline-secondary">Disable</button>' in html
    assert '<button class="btn btn-sm btn-outline-danger">Delete</button>' in html


def test_a_versions_diff_marks_added_and_removed_lines(admin_client):
    from fleet.scopes import Scope
    from governance import services

    policy = make_policy(name="Agent")
    services.policy_update(actor=None, policy=policy, name="Agent", rules={"apps": [{"name": "nginx"}]}, scope=Scope())
    html = admin_client.get(policy.get_absolute_url()).content.decode()
    assert '<span class="diff-del">-  - name: monitoring-agent</span>' in html
    assert '<span class="diff-add">+  - name: nginx</span>' in html
