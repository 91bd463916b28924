"""`?export=csv` (and the page itself) on every HTML list with hostile filter values: never a 500, and
the CSV's text cells still formula-escaped. Also the API exports with hostile filters."""

import csv
import io

import pytest

from .conftest import make_policy

pytestmark = pytest.mark.django_db

LISTS = [
    "/servers/",
    "/groups/",
    "/tags/",
    "/registration-tokens/",
    "/operations/",
    "/settings/users/",
    "/settings/audit/",
    "/notifications/",
    "/governance/canary/",
    "/governance/gitops/",
    "/governance/gitops/conflicts/",
    "/governance/scores/",
    "/governance/policies/",
    "/governance/violations/",
    "/governance/violations/export.csv",
    "/governance/exceptions/",
]
PARAMS = ["q", "sort", "page", "state", "status", "policy", "instance", "group", "tag", "level", "repository", "phase"]
VALUES = [
    "%00",
    "a%00b",
    "%ED%A0%80",
    "%FF%FE",
    "9" * 40,
    "-1",
    "1e400",
    "NaN",
    "=1%2B1",
    "%2Ftmp%2F..%2F..",
    "x" * 3000,
]
FORMULA = '=HYPERLINK("http://evil","x")'


@pytest.fixture
def fleet(admin_user, make_instance):
    make_instance(name="web-01", apps=[])
    make_policy(admin_user, name=FORMULA)


@pytest.mark.parametrize("path", LISTS)
def test_hostile_filters_never_break_a_list_or_its_csv(admin_client, fleet, path):
    failures = []
    for param in PARAMS:
        for value in VALUES:
            for export in ("", "&export=csv"):
                url = f"{path}?{param}={value}{export}"
                response = admin_client.get(url)
                if response.status_code >= 500:
                    failures.append((url[:120], response.status_code))
                elif response.status_code == 200 and response.get("Content-Type", "").startswith("text/csv"):
                    _assert_escaped(b"".join(response.streaming_content).decode())
    # Unknown and repeated sorts fall back to the default order.
    for sort in ("nope", "-nope", "--name", "name,name", "%00"):
        response = admin_client.get(f"{path}?sort={sort}&sort=x&export=csv")
        if response.status_code >= 500:
            failures.append((sort, response.status_code))
    assert not failures, failures


def _assert_escaped(text: str) -> None:
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not (cell.startswith("-") and not _number(cell)), cell


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_the_policy_csv_escapes_a_formula_name_under_any_sort(admin_client, fleet):
    for sort in ("", "name", "-name", "nope"):
        response = admin_client.get(f"/governance/policies/?sort={sort}&export=csv")
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [r["name"] for r in rows] == ["'" + FORMULA]


@pytest.mark.parametrize("path", ["/api/governance/violations/export", "/api/governance/compliance/instances/export"])
@pytest.mark.parametrize("fmt", ["csv", "json", "yaml", "zip", "%00", "x" * 300])
def test_the_api_exports_answer_hostile_filters_in_the_envelope(admin_api, fleet, path, fmt):
    for query in ("policy=%00", "instance=" + "9" * 40, "status=%00", "severity=-1", "group=%ED%A0%80", "sort=nope"):
        response = admin_api.get(f"{path}?format={fmt}&{query}")
        assert response.status_code < 500, (fmt, query, response.status_code)
        if response.status_code >= 400:
            body = response.json()
            assert {"error", "message", "errors"} <= body.keys(), body
        elif response.get("Content-Type", "").startswith("text/csv"):
            _assert_escaped(b"".join(response.streaming_content).decode())


@pytest.mark.parametrize("query", ["q=a%00b", "q=a%00b&export=csv", "%00=1", "tag=x&tag=%00&export=csv"])
def test_a_nul_in_a_filter_is_a_400_for_the_page_and_its_csv(admin_client, fleet, query):
    for path in ("/tags/", "/servers/", "/governance/policies/"):
        response = admin_client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query, response.status_code)
