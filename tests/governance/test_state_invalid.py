"""Issue #11: an instance whose stored state cannot be evaluated is recorded as state_invalid, with the
reason, and never stops anyone else's evaluation. Each poisonous state is stored directly in the
database (as a broken agent or an old panel version could have left it), bypassing validation."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from fleet.models import Instance
from governance import services
from governance.models import InstanceCompliance, PolicyCompliance, Violation
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db

OLD = (timezone.now() - timedelta(hours=100)).isoformat()
POISONS = {
    "released_at year 1": (
        "updates",
        '[{"kind": "os", "name": "os", "version": "99.1", "released_at": "0001-01-01T00:00:00+14:00"}]',
    ),
    "update name a list": (
        "updates",
        f'[{{"kind": "app", "name": ["nginx"], "version": "9", "released_at": "{OLD}"}}]',
    ),
    "1e400 in settings": ("settings", '{"ssh.password_auth": 1e400}'),
    "apps not a list": ("apps", '"nginx"'),
    "app entries not objects": ("apps", '[["nginx", "1.0"]]'),
}
SQLITE_ONLY = {  # PostgreSQL cannot store these at all (jsonb refuses \u0000 and lone surrogates)
    "NUL in an app name": ("apps", '[{"name": "ngi\\u0000nx", "version": "1", "running": true}]'),
    "NUL in an update version": (
        "updates",
        f'[{{"kind": "os", "name": "os", "version": "9\\u0000", "released_at": "{OLD}"}}]',
    ),
}


def poisons():
    return {**POISONS, **(SQLITE_ONLY if connection.vendor == "sqlite" else {})}


def unevaluable(what: str) -> bool:
    """PostgreSQL stores 1e400 as the exact integer 10**400, which evaluates like any number (SQLite
    keeps the text, which Python reads as infinity: not a value a setting can be compared with)."""
    return not (what == "1e400 in settings" and connection.vendor == "postgresql")


def poison(instance, column: str, raw_json: str) -> None:
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE fleet_instance SET {column} = %s{cast} WHERE id = %s", [raw_json, instance.pk])  # noqa: S608


@pytest.fixture
def fleet_with_policies(make_instance):
    good = [make_instance(apps=[("monitoring-agent", "1")], settings={"ssh.password_auth": False}) for _ in range(3)]
    bad = make_instance(apps=[], settings={"ssh.password_auth": True})
    make_policy()
    make_policy(name="SSH", policy_type="baseline", rules={"settings": {"ssh.password_auth": False}})
    make_policy(
        name="OS updates",
        policy_type="update_rules",
        rules={"os_deadline_hours": 48, "apps": [{"name": "nginx", "deadline_hours": 1}]},
    )
    make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnet*"}]})
    return good, bad


def test_every_poisonous_state_is_recorded_invalid_and_the_sweep_evaluates_everyone_else(
    make_instance, fleet_with_policies
):
    good, bad = fleet_with_policies
    poisoned = {}
    for what, (column, raw) in poisons().items():
        inst = make_instance(name=f"poisoned-{len(poisoned)}", apps=[("nginx", "1.0")])
        poison(inst, column, raw)
        poisoned[what] = inst
    Violation.objects.all().delete()
    InstanceCompliance.objects.all().delete()

    result = services.evaluate_fleet()

    invalid = {what for what in poisoned if unevaluable(what)}
    assert result["invalid"] == len(invalid)
    for inst in good:
        standing = InstanceCompliance.objects.get(instance=inst)
        assert (standing.met, standing.applicable, standing.score, standing.invalid_reason) == (4, 4, 100.0, "")
    standing = InstanceCompliance.objects.get(instance=bad)
    assert (standing.met, standing.applicable, standing.invalid_reason) == (2, 4, "")
    assert set(Violation.objects.filter(instance=bad).values_list("rule_key", flat=True)) == {
        "app:monitoring-agent",
        "setting:ssh.password_auth",
    }
    for what, inst in poisoned.items():
        standing = InstanceCompliance.objects.get(instance=inst)
        if what not in invalid:
            assert (standing.invalid_reason, standing.met, standing.applicable) == ("", 2, 4), what  # SSH fails
            continue
        assert standing.invalid_reason, what
        assert standing.score is None and standing.applicable == 0, what
        assert set(standing.state_map.values()) == {"u"}, what
    counts = {pc.policy.name: (pc.compliant, pc.noncompliant, pc.unknown) for pc in PolicyCompliance.objects.all()}
    assert counts["Need agent"] == (3, 1 + len(poisoned) - len(invalid), len(invalid))


def test_each_poisonous_state_alone_leaves_heartbeat_evaluations_of_others_working(make_instance, fleet_with_policies):
    good, _ = fleet_with_policies
    for what, (column, raw) in poisons().items():
        inst = make_instance(apps=[("nginx", "1.0")])
        poison(inst, column, raw)
        expected = int(unevaluable(what))
        assert services.evaluate_instance(instance_id=inst.pk)["invalid"] == expected, what
        scope = services.evaluate_policy_scope(policy_id=None, previous_instance_ids=[inst.pk, good[0].pk])
        assert (scope["instances"], scope["invalid"]) == (2, expected), what
    assert InstanceCompliance.objects.get(instance=good[0]).score == 100.0


def test_a_state_invalid_instance_keeps_its_violations_and_recovers_with_a_good_report(
    make_instance, fleet_with_policies
):
    _, bad = fleet_with_policies
    before = set(Violation.objects.filter(instance=bad, status="open").values_list("pk", flat=True))
    poison(bad, "apps", '"nginx"')
    services.evaluate_instance(instance_id=bad.pk)
    assert set(Violation.objects.filter(instance=bad, status="open").values_list("pk", flat=True)) == before
    Instance.objects.filter(pk=bad.pk).update(apps=[{"name": "monitoring-agent", "version": "1", "running": True}])
    services.evaluate_instance(instance_id=bad.pk)
    standing = InstanceCompliance.objects.get(instance=bad)
    assert standing.invalid_reason == "" and (standing.met, standing.applicable) == (3, 4)


def test_state_invalid_is_shown_in_the_api_and_on_the_server_page(
    make_instance, fleet_with_policies, admin_api, admin_client
):
    inst = make_instance(apps=[])
    poison(inst, "updates", POISONS["update name a list"][1])
    services.evaluate_instance(instance_id=inst.pk)
    body = admin_api.get(f"/api/governance/compliance/instances/{inst.pk}").json()
    assert body["state_invalid"] is True and "updates[0]" in body["invalid_reason"]
    listed = admin_api.get("/api/governance/compliance/instances").json()["results"]
    assert [r["state_invalid"] for r in listed if r["instance"] == inst.pk] == [True]
    page = admin_client.get(f"/governance/panels/servers/{inst.pk}/").content.decode()
    assert "state_invalid" in page and "updates[0]" in page


def test_the_server_page_and_its_panels_open_for_every_poisonous_state(
    make_instance, fleet_with_policies, admin_client
):
    """Issue #11: 'that server's page is a 500' (a release time in year 1)."""
    for n, (what, (column, raw)) in enumerate(poisons().items()):
        inst = make_instance(name=f"page-{n}", apps=[("nginx", "1.0")])
        poison(inst, column, raw)
        services.evaluate_instance(instance_id=inst.pk)
        for url in (inst.get_absolute_url(), f"/governance/panels/servers/{inst.pk}/", f"/servers/{inst.pk}/apps/"):
            response = admin_client.get(url)
            assert response.status_code == 200, (what, url, response.status_code)
