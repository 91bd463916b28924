"""Policy history: a version for every change from every source, and compliance of an instance on a past day."""

from datetime import datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.models import Policy, PolicyException, PolicyVersion, Violation
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db

AGENT = {"name": "Need agent", "policy_type": "required_apps", "rules": {"apps": [{"name": "monitoring-agent"}]}}


def test_every_change_is_a_version_saying_who_and_from_where(admin_api, admin_client, admin_user):
    created = admin_api.post("/api/governance/policies", AGENT, format="json")
    assert_status(created, 201)
    pk = created.data["id"]
    edit = admin_client.post(
        reverse("governance:policy_edit", args=[pk]),
        {"name": "Need agent", "apps": "monitoring-agent >= 1.2", "scope_kind": "all", "enabled": "on"},
    )
    assert edit.status_code == 302
    admin_client.post(reverse("governance:policy_toggle", args=[pk]))
    text = admin_api.get("/api/governance/policies/export").content.decode().replace("enabled: false", "enabled: true")
    assert_status(admin_api.post("/api/governance/policies/import?apply=true", {"yaml": text}, format="json"), 200)

    versions = admin_api.get(f"/api/governance/policies/{pk}/versions")
    assert_status(versions, 200)
    rows = [(v["number"], v["change"], v["source"], v["actor_label"]) for v in versions.data]
    assert rows == [
        (4, "changed", "import", "alice"),
        (3, "disabled", "ui", "alice"),
        (2, "changed", "ui", "alice"),
        (1, "created", "api", "alice"),
    ]
    assert versions.data[2]["snapshot"]["rules"]["apps"][0]["min_version"] == "1.2"

    page = admin_client.get(reverse("governance:policy_detail", args=[pk])).content.decode()
    assert "v4" in page and "-      min_version: &#x27;1.2&#x27;" not in page
    assert "+      min_version: &#x27;1.2&#x27;" in page or "+    min_version: &#x27;1.2&#x27;" in page

    assert_status(admin_api.delete(f"/api/governance/policies/{pk}"), 204)
    last = PolicyVersion.objects.order_by("-id").first()
    assert (last.policy, last.policy_name, last.change, last.number) == (None, "Need agent", "deleted", 5)


def test_an_unchanged_save_records_no_version(admin_api):
    pk = admin_api.post("/api/governance/policies", AGENT, format="json").data["id"]
    assert_status(admin_api.patch(f"/api/governance/policies/{pk}", {"name": "Need agent"}, format="json"), 200)
    assert PolicyVersion.objects.filter(policy_id=pk).count() == 1


def _at(days_ago: int, hour: int = 12):
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, time(hour)))


def _day(days_ago: int) -> str:
    return (timezone.localdate() - timedelta(days=days_ago)).isoformat()


@pytest.fixture
def history(make_instance):
    """web-01 registered 30 days ago; "Need agent" created 10 days ago (v1) and changed 4 days ago (v2);
    a violation open from 8 days ago until 3 days ago; a waiver valid from 6 until 4 days ago."""
    web = make_instance("web-01", apps=[("monitoring-agent", "1.4")])
    type(web).objects.filter(pk=web.pk).update(registered_at=_at(30))
    policy = make_policy()
    PolicyVersion.objects.filter(policy=policy).update(created=_at(10))
    v2 = PolicyVersion.objects.create(
        policy=policy,
        policy_name=policy.name,
        number=2,
        change="changed",
        source="api",
        created=_at(4),
        snapshot={**PolicyVersion.objects.get(policy=policy, number=1).snapshot, "description": "stricter"},
    )
    violation = Violation.objects.create(
        policy=policy,
        policy_name=policy.name,
        instance=web,
        rule_key="app:monitoring-agent",
        rule="monitoring-agent installed",
        evidence="not installed",
        severity="warning",
        status="resolved",
        first_detected_at=_at(8),
        last_seen_at=_at(3, 10),
        resolved_at=_at(3, 10),
    )
    waiver = PolicyException.objects.create(
        policy=policy, rule_key="app:monitoring-agent", justification="migration", expires_at=_at(4)
    )
    PolicyException.objects.filter(pk=waiver.pk).update(created=_at(6))
    return policy, web, v2, violation, waiver


def test_compliance_on_a_past_day_names_the_version_and_the_waiver(viewer_api, history):
    policy, web, v2, violation, waiver = history

    def on(days_ago):
        response = viewer_api.get(
            f"/api/governance/policies/{policy.pk}/compliance-on?instance=web-01&date={_day(days_ago)}"
        )
        assert_status(response, 200)
        return response.data

    assert on(12)["state"] == "unknown" and "did not exist" in on(12)["reason"]
    assert (on(9)["state"], on(9)["version"]["number"]) == ("compliant", 1)
    seven = on(7)
    assert (seven["state"], seven["version"]["number"], seven["waivers"]) == ("noncompliant", 1, [])
    assert [v["id"] for v in seven["violations"]] == [violation.pk]
    five = on(5)
    assert (five["state"], five["version"]["number"]) == ("exempt", 1)
    assert [w["id"] for w in five["waivers"]] == [waiver.pk] and five["waivers"][0]["justification"] == "migration"
    four = on(4)  # the waiver expired at noon, the change came at noon: v2, not waived
    assert (four["state"], four["version"]["number"]) == ("noncompliant", 2)
    assert (on(3)["state"], on(3)["version"]["number"]) == ("compliant", 2)


def test_compliance_on_refuses_unknown_instances_and_bad_dates_in_the_envelope(viewer_api, history):
    policy = history[0]
    response = viewer_api.get(f"/api/governance/policies/{policy.pk}/compliance-on?instance=nope&date=2026-02-30")
    assert_status(response, 400)
    assert set(response.data["errors"]) == {"instance", "date"}
    future = (timezone.localdate() + timedelta(days=2)).isoformat()
    response = viewer_api.get(f"/api/governance/policies/{policy.pk}/compliance-on?instance=web-01&date={future}")
    assert_status(response, 400)
    assert response.data["errors"]["date"] == ["The date is in the future."]
    assert Policy.objects.count() == 1
