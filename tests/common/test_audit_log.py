"""The audit log's filters (Settings page and GET /api/audit): times outside the shared range are a
field error, never a database error."""

import pytest
from django.urls import reverse

from common.services import audit_log
from tests.base import assert_status

OUT_OF_RANGE = [
    "2026-01-01T00:00:00-17:00",  # PostgreSQL refuses offsets beyond ±15:59
    "0001-01-01T00:00:00+14:00",  # year 1 overflows on the way to UTC
    "10000-01-01T00:00:00Z",
]


@pytest.fixture
def entries(db):
    audit_log(actor="system", action="group.create", obj=None, details={"name": "web"})
    audit_log(actor="system", action="instance.delete", obj=None)


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("name", ["since", "until"])
def test_the_api_refuses_a_time_filter_outside_the_range_with_a_field_error(viewer_api, entries, name, value):
    response = viewer_api.get("/api/audit", {name: value})
    assert_status(response, 400)
    body = response.json()
    assert body["error"] == "invalid"
    assert list(body["errors"]) == [name]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_the_audit_page_shows_an_out_of_range_time_as_an_error_on_the_field(viewer_client, entries, value):
    response = viewer_client.get(reverse("common:audit_list"), {"since": value})
    assert_status(response, 200)
    assert "since" in response.context["filter"].form.errors
    assert list(response.context["entries"]) == []  # not the unfiltered log under a filter that failed
    assert "invalid-feedback" in response.content.decode()


def test_a_time_filter_within_the_range_filters_by_time(viewer_api, entries):
    assert len(viewer_api.get("/api/audit", {"since": "2001-01-01T00:00:00+14:00"}).json()["results"]) == 2
    assert viewer_api.get("/api/audit", {"until": "2001-01-01T00:00:00-14:00"}).json()["results"] == []
