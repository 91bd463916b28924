"""Reports: the per-policy and per-group compliance report for a date range (API and page), from real
daily snapshots of real evaluations, and the weekly digest that goes out once per week."""

from datetime import date, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from fleet.models import Instance
from governance import services
from governance.models import ComplianceDigest
from governance.reports.digest import weekly_digest_send
from tests.base import assert_status

from .conftest import make_policy

pytestmark = pytest.mark.django_db

D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)


@pytest.fixture
def history(admin_user, make_instance, group):
    """Two instances in group web; day 1 one lacks the agent (50 %), day 2 it has it (100 %), day 3 both lack it."""
    ok = make_instance(apps=[("monitoring-agent", "2.4.0")], groups=[group])
    bad = make_instance(apps=[], groups=[group])
    policy = make_policy(admin_user, name="Agent everywhere")
    services.compliance_snapshot_take(day=D1)
    Instance.objects.filter(pk=bad.pk).update(apps=[{"name": "monitoring-agent", "version": "2.4.0", "running": True}])
    services.evaluate_instances(instance_ids=[bad.pk])
    services.recount_due_policies()
    services.compliance_snapshot_take(day=D2)
    Instance.objects.filter(pk__in=[ok.pk, bad.pk]).update(apps=[])
    services.evaluate_instances(instance_ids=[ok.pk, bad.pk])
    services.recount_due_policies()
    services.compliance_snapshot_take(day=D3)
    return policy, group


def report(api, **params):
    return api.get("/api/governance/reports/compliance", params)


def test_the_policy_report_has_each_day_and_the_change_over_the_range(viewer_api, history):
    policy, _ = history
    response = report(viewer_api, kind="policy", start="2026-11-02", end="2026-11-03")
    assert_status(response, 200)
    (row,) = response.json()["rows"]
    assert row["id"] == policy.pk and row["label"] == "Agent everywhere"
    assert [(d["date"], d["score"]) for d in row["days"]] == [("2026-11-02", 50.0), ("2026-11-03", 100.0)]
    assert (row["first"], row["last"], row["change"], row["average"], row["lowest"]) == (50.0, 100.0, 50.0, 75.0, 50.0)
    later = report(viewer_api, kind="policy", start="2026-11-03", end="2026-11-04").json()["rows"][0]
    assert [d["score"] for d in later["days"]] == [100.0, 0.0] and later["change"] == -100.0


def test_the_group_report_follows_the_instances_of_each_group(viewer_api, history):
    _, group = history
    (row,) = report(viewer_api, kind="group", start="2026-11-01", end="2026-11-30").json()["rows"]
    assert row["id"] == group.pk and row["label"] == "web"
    assert [d["score"] for d in row["days"]] == [50.0, 100.0, 0.0]


def test_a_range_without_snapshots_is_empty(viewer_api, history):
    assert report(viewer_api, start="2025-01-01", end="2025-01-31").json()["rows"] == []


@pytest.mark.parametrize(
    "params, field",
    [
        ({"start": "2026-11-05", "end": "2026-11-01"}, "end"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-1-5"}, "start"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "end"),
        ({"kind": "fleet"}, "kind"),
    ],
)
def test_bad_ranges_are_refused_in_the_envelope(viewer_api, params, field):
    response = report(viewer_api, **params)
    assert_status(response, 400)
    body = response.json()
    assert body["error"] == "invalid" and list(body["errors"]) == [field]


def test_anonymous_gets_no_report(client):
    assert client.get("/api/governance/reports/compliance").status_code in (401, 403)
    assert client.get("/governance/reports/").status_code == 302


def test_the_report_page_shows_the_table_and_errors_on_the_fields(viewer_client, history):
    response = viewer_client.get("/governance/reports/", {"kind": "policy", "start": "2026-11-02", "end": "2026-11-04"})
    assert_status(response, 200)
    text = response.content.decode()
    assert "Agent everywhere" in text and 'id="report-table"' in text and "-50.0" in text
    bad = viewer_client.get("/governance/reports/", {"start": "2026-11-05", "end": "2026-11-01"}).content.decode()
    assert "The end must not be before the start." in bad and 'id="report-table"' not in bad


def test_the_digest_goes_to_the_admins_once_per_week(settings, history, admin_user, operator_user):
    settings.COMPLIANCE_DIGEST_ENABLED = True
    monday = timezone.make_aware(timezone.datetime(2026, 11, 9, 7, 0))
    assert weekly_digest_send(now=monday)["recipients"] == 1
    assert weekly_digest_send(now=monday + timedelta(hours=1))["skipped"].startswith("the digest of the week")
    assert weekly_digest_send(now=monday + timedelta(days=3))["skipped"]
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [admin_user.email]
    assert "2026-11-02" in message.subject and "2026-11-08" in message.subject
    assert "Agent everywhere: 0.0 %" in message.body and "web:" in message.body
    assert weekly_digest_send(now=monday + timedelta(days=7))["recipients"] == 1
    assert len(mail.outbox) == 2
    assert list(ComplianceDigest.objects.values_list("week", flat=True)) == [date(2026, 11, 16), date(2026, 11, 9)]


def test_no_digest_unless_turned_on(settings, history):
    settings.COMPLIANCE_DIGEST_ENABLED = False
    assert weekly_digest_send()["skipped"]
    assert mail.outbox == [] and not ComplianceDigest.objects.exists()
