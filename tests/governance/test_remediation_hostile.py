"""Hostile remediation settings (API and the HTML form), report ranges and compliance-on queries:
each a 400 in the envelope (or the form's field errors), nothing stored, bounded cost."""

import pytest

from governance.models import ComplianceSnapshot, RemediationSettings
from tests.base import assert_status

from .conftest import make_policy
from .test_remediation import AGENT

pytestmark = pytest.mark.django_db

HUGE = 10**30


@pytest.fixture
def policy(admin_user, make_instance):
    make_instance(name="web-01", apps=[])
    return make_policy(admin_user, rules=AGENT)


def _settings(policy):
    row = RemediationSettings.objects.filter(pk=policy.pk).first()
    return None if row is None else {f.name: getattr(row, f.name) for f in row._meta.fields}


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_instances", -1),
        ("max_instances", HUGE),
        ("max_percent", 2**31),
        ("max_per_hour", -(2**63)),
        ("max_attempts", HUGE),
        ("backoff_seconds", -5),
        ("backoff_seconds", 2**63),
        ("breaker_percent", 1000),
        ("breaker_min_attempts", HUGE),
        ("canary_percentage", -1),
        ("canary_check_interval", HUGE),
        ("canary_max_duration", 2**40),
        ("window_days", [HUGE]),
        ("window_days", [-1]),
        ("window_timezone", "../../etc/passwd"),
        ("window_timezone", "/etc/localtime"),
        ("window_timezone", "Europe/Berlin\u0000"),
        ("window_timezone", "x" * 10000),
        ("window_timezone", ""),
        ("canary_criteria", ["no_such\u0000"]),
        ("window_start", "25:00"),
    ],
)
def test_absurd_settings_are_refused_on_their_field_and_nothing_is_stored(admin_api, policy, field, value):
    before = _settings(policy)
    response = admin_api.put(
        f"/api/governance/policies/{policy.pk}/remediation", {"mode": "enforce", field: value}, format="json"
    )
    assert_status(response, 400)
    body = response.json()
    assert any(key == field or key.startswith(field + "[") for key in body["errors"]), body
    assert _settings(policy) == before
    policy.refresh_from_db()
    assert policy.mode == "audit"


def test_a_window_start_after_its_end_is_a_window_over_midnight_not_an_error(admin_api, policy):
    response = admin_api.put(
        f"/api/governance/policies/{policy.pk}/remediation",
        {"window_start": "23:00", "window_end": "01:00"},
        format="json",
    )
    assert_status(response, 200)
    assert (response.json()["settings"]["window_start"], response.json()["settings"]["window_end"]) == (
        "23:00:00",
        "01:00:00",
    )


def test_a_window_that_starts_when_it_ends_is_refused_on_window_end(admin_api, policy):
    """22:00 to 22:00 could mean no time at all or the whole day: a field error instead of a guess."""
    before = _settings(policy)
    response = admin_api.put(
        f"/api/governance/policies/{policy.pk}/remediation",
        {"mode": "enforce", "window_start": "22:00", "window_end": "22:00:00"},
        format="json",
    )
    assert_status(response, 400)
    assert list(response.json()["errors"]) == ["window_end"]
    assert "leave both empty for all day" in response.json()["errors"]["window_end"][0]
    assert _settings(policy) == before


def test_the_settings_page_refuses_a_window_that_starts_when_it_ends_on_its_field(admin_client, policy):
    form = admin_client.get(f"/governance/policies/{policy.pk}/remediation/").context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list)}
    data.update(mode="enforce", window_start="04:00", window_end="04:00")
    response = admin_client.post(f"/governance/policies/{policy.pk}/remediation/", data)
    assert list(response.context["form"].errors) == ["window_end"]
    policy.refresh_from_db()
    assert policy.mode == "audit"


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_instances", str(HUGE)),
        ("backoff_seconds", "-1"),
        ("window_timezone", "../../etc/passwd"),
        ("window_timezone", "Europe/Berlin\x00"),
        ("canary_check_interval", str(2**63)),
    ],
)
def test_the_settings_page_shows_absurd_values_on_their_field(admin_client, policy, field, value):
    form = admin_client.get(f"/governance/policies/{policy.pk}/remediation/").context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list)}
    data.update(mode="enforce", **{field: value})
    response = admin_client.post(f"/governance/policies/{policy.pk}/remediation/", data)
    assert response.status_code in (200, 400), response.status_code  # the form again, not a redirect
    assert response.context["form"].errors.get(field), response.context["form"].errors
    policy.refresh_from_db()
    assert policy.mode == "audit"


@pytest.mark.parametrize(
    "query,field",
    [
        ("start=0000-01-01", "start"),
        ("start=0001-01-01&end=10000-01-01", "end"),
        ("end=10000-01-01", "end"),
        ("start=2026-02-30", "start"),
        ("start=2026-05-02&end=2026-05-01", "end"),
        ("start=1926-01-01&end=2026-01-01", "end"),
        ("start=0001-01-01&end=9999-12-31", "end"),
        ("start=2026-01-01%00", "start"),
        ("start=%ED%A0%80", "start"),
        ("start=+2026-01-01", "start"),
        ("kind=../../x", "kind"),
    ],
)
def test_report_ranges_out_of_bounds_are_refused_by_field(viewer_api, query, field):
    response = viewer_api.get(f"/api/governance/reports/compliance?{query}")
    assert_status(response, 400)
    assert field in response.json()["errors"], response.json()


@pytest.mark.parametrize(
    "query",
    ["start=0000-01-01", "start=2026-02-30", "start=1926-01-01&end=2026-01-01", "start=2026-01-01%00", "kind=%00"],
)
def test_the_reports_page_answers_bad_ranges_with_a_message_and_csv_too(viewer_client, query):
    for suffix in ("", "&export=csv"):
        response = viewer_client.get(f"/governance/reports/?{query}{suffix}")
        assert response.status_code in (200, 400), response.status_code
        if response.status_code == 200 and suffix:
            assert not response.content.startswith(b"=")


def test_a_long_valid_range_costs_one_query_for_the_snapshots(viewer_api, django_assert_max_num_queries):
    ComplianceSnapshot.objects.all().delete()
    with django_assert_max_num_queries(8):
        response = viewer_api.get("/api/governance/reports/compliance?start=2025-01-01&end=2025-12-31")
    assert_status(response, 200)


@pytest.mark.parametrize(
    "instance,date,field",
    [
        ("", "2026-01-01", "instance"),
        ("nope", "2026-01-01", "instance"),
        ("web-01\x00", "2026-01-01", "instance"),
        ("9" * 40, "2026-01-01", "instance"),
        ("-1", "2026-01-01", "instance"),
        ("１２", "2026-01-01", "instance"),
        ("web-01", "0000-01-01", "date"),
        ("web-01", "10000-01-01", "date"),
        ("web-01", "2026-02-30", "date"),
        ("web-01", "2999-01-01", "date"),
        ("web-01", "", "date"),
        ("web-01", "2026-01-01T00:00", "date"),
    ],
)
def test_compliance_on_refuses_bad_instances_and_dates_by_field(viewer_api, policy, instance, date, field):
    response = viewer_api.get(
        f"/api/governance/policies/{policy.pk}/compliance-on", {"instance": instance, "date": date}
    )
    assert_status(response, 400)
    assert field in response.json()["errors"], response.json()


def test_compliance_on_an_unknown_policy_is_a_404_in_the_envelope(viewer_api):
    response = viewer_api.get(f"/api/governance/policies/{2**63}/compliance-on?instance=x&date=2026-01-01")
    assert_status(response, 404)
    assert response.json()["error"] == "not_found"


def test_the_schema_documents_the_bounds_the_rails_enforce(admin_api, policy):
    """`make fuzz` sent schema-valid integers the rails refuse: the schema now says what is accepted."""
    from drf_spectacular.generators import SchemaGenerator

    from governance.remediation.rails import NUMBERS

    properties = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"][
        "RemediationUpdateRequest"
    ]["properties"]
    for field, (low, high, optional) in NUMBERS.items():
        assert (properties[field]["minimum"], properties[field]["maximum"]) == (low, high), field
        assert properties[field]["nullable"] is optional
        for value in (low, high):
            response = admin_api.put(f"/api/governance/policies/{policy.pk}/remediation", {field: value}, format="json")
            assert_status(response, 200)
        response = admin_api.put(f"/api/governance/policies/{policy.pk}/remediation", {field: high + 1}, format="json")
        assert_status(response, 400)
        assert response.json()["errors"][field] == [f"Must be between {low} and {high:,}."]
    assert properties["window_days"]["items"]["maximum"] == 6
