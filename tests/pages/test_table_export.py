"""Every list's "Export CSV": the list's filtered, sorted rows, all pages, behind the page's own role check,
spreadsheet-safe; and the API's violations and compliance exports in CSV and JSON."""

import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from common.models import Notification
from common.tables import csv_text
from fleet.choices import InstanceStatus
from fleet.models import Group, Instance
from gitops.models import Conflict, Repository, SyncRun
from tests.base import assert_status

pytestmark = pytest.mark.django_db


def read_csv(response) -> list[list[str]]:
    assert_status(response, 200)
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def column(rows, key) -> list[str]:
    index = rows[0].index(key)
    return [r[index] for r in rows[1:]]


@pytest.fixture
def lists(site, admin_user, viewer_user):
    """Beyond the site: a server and a group outside the filters, a repository with a run and a conflict,
    notifications for the viewer and for someone else."""
    Instance.objects.create(name="db-01", status=InstanceStatus.OFFLINE, os_version="22.04")
    Group.objects.create(name="db")
    repo = Repository.objects.create(
        name="fleet-config", url="ssh://git@127.0.0.1:2222/fleet.git", private_key_encrypted="x", public_key="x"
    )
    SyncRun.objects.create(repository=repo, trigger="manual", status="succeeded", commit_sha="abc123")
    Conflict.objects.create(repository=repo, level="fleet", key="ssh.port", panel_value=22, git_value=2222)
    Notification.objects.create(user=viewer_user, title="Canary rolled back", level="critical")
    Notification.objects.create(user=admin_user, title="For the admin only")
    return {**site, "repository": repo}


# (list, URL name, query, header the CSV starts with, the column checked, its values in order).
CASES = [
    (
        "servers",
        "fleet:server_list",
        "q=web-0&sort=-name",
        ["id", "name", "hostname", "status", "os_version"],
        "name",
        ["web-03", "web-02", "web-01"],
    ),
    ("groups", "fleet:group_list", "sort=-name", ["id", "name", "description", "servers"], "name", ["web", "db"]),
    (
        "tags",
        "fleet:tag_list",
        "q=slot&sort=-value",
        ["key", "value", "servers", "selected_by"],
        "value",
        ["3", "2", "1"],
    ),
    ("tokens", "fleet:token_list", "", ["id", "name", "status", "uses"], "name", ["web servers"]),
    ("commands", "fleet:command_list", "kind=restart_app", ["id", "command", "kind"], "kind", ["restart_app"]),
    ("policies", "governance:policy_list", "q=telnet", ["id", "name", "description", "type"], "name", ["No telnet"]),
    (
        "violations",
        "governance:violation_list",
        "instance=web-01",
        ["id", "severity", "status", "policy", "instance"],
        "instance",
        ["web-01"],
    ),
    (
        "exceptions",
        "governance:exception_list",
        "",
        ["id", "policy", "rule_key", "scope"],
        "justification",
        ["decommissioned next week"],
    ),
    (
        "scores",
        "governance:score_list",
        "tag=env%3Dprod&sort=-instance",
        ["instance_id", "instance", "status", "met"],
        "instance",
        ["web-03", "web-02", "web-01"],
    ),
    (
        "canaries",
        "canary:list",
        "",
        ["id", "deployment", "change", "scope", "phase"],
        "change",
        ["update_app web-app → 2.0"],
    ),
    (
        "repositories",
        "gitops:list",
        "",
        ["id", "name", "url", "branch", "status"],
        "name",
        ["fleet-config", "policies-repo"],
    ),
    ("conflicts", "gitops:conflicts", "", ["id", "repository", "level", "target", "key"], "key", ["ssh.port"]),
    (
        "audit",
        "common:audit_list",
        "action=policy_exception.&sort=action",
        ["id", "created", "actor", "action"],
        "action",
        ["policy_exception.create"],
    ),
    (
        "notifications",
        "common:notification_list",
        "",
        ["id", "created", "level", "title"],
        "title",
        ["Canary rolled back"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_viewer_exports_each_list_with_its_filters_and_order(client, viewer_user, lists, case):
    _name, url_name, query, header, key, values = case
    client.force_login(viewer_user)
    page = client.get(f"{reverse(url_name)}?{query}")
    assert_status(page, 200)
    assert b"Export CSV" in page.content  # the link is on the page, with the filters in it
    export = page.context["export_url"]
    assert (
        export.startswith(reverse(url_name)) and "export=csv" in export and all(p in export for p in query.split("&"))
    )
    rows = read_csv(client.get(export))
    assert rows[0][: len(header)] == header
    assert column(rows, key) == values


def test_the_users_list_exports_for_admins_and_a_viewer_is_refused(client, admin_user, viewer_user, lists):
    client.force_login(admin_user)
    rows = read_csv(client.get(reverse("common:user_list"), {"export": "csv", "sort": "-username"}))
    assert rows[0][:4] == ["id", "username", "email", "role"]
    assert column(rows, "username") == ["victor", "alice"]
    client.force_login(viewer_user)
    assert client.get(reverse("common:user_list"), {"export": "csv"}).status_code == 403


def test_a_repositorys_sync_history_exports_every_run(viewer_client, lists):
    rows = read_csv(viewer_client.get(lists["repository"].get_absolute_url(), {"export": "csv"}))
    assert rows[0][:4] == ["id", "started_at", "finished_at", "trigger"]
    assert column(rows, "commit_sha") == ["abc123"]


def test_an_export_holds_every_page_not_only_the_first(viewer_client, db):
    Instance.objects.bulk_create(Instance(name=f"node-{n:03}") for n in range(60))  # the page holds 25
    rows = read_csv(viewer_client.get(reverse("fleet:server_list"), {"export": "csv", "sort": "name"}))
    assert column(rows, "name") == [f"node-{n:03}" for n in range(60)]


def test_an_anonymous_export_goes_to_the_sign_in_page(client, db):
    response = client.get(reverse("governance:violation_list"), {"export": "csv"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_cells_a_spreadsheet_would_run_as_a_formula_are_quoted(viewer_client, db):
    for name in ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain"):
        Group.objects.create(name=name, description=name)
    rows = read_csv(viewer_client.get(reverse("fleet:group_list"), {"export": "csv", "sort": "name"}))
    assert sorted(column(rows, "name")) == sorted(
        ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "plain"]
    )
    assert column(rows, "servers") == ["0"] * 7  # numbers stay numbers (a negative one would too)
    assert csv_text(-3) == "-3" and csv_text(None) == "" and csv_text(True) == "true"


@pytest.mark.parametrize("url_name", ["fleet:server_list", "fleet:tag_list", "common:audit_list"])
def test_an_export_makes_the_same_queries_for_3_rows_as_for_300(viewer_client, db, url_name):
    from fleet import services as fleet

    def export_queries(n):
        start = Instance.objects.count()
        for i in range(start, start + n):
            server = Instance.objects.create(name=f"s-{i:04}")
            server.tags.set(fleet.tags_get_or_create([f"n={i}"]))
        with CaptureQueriesContext(connection) as queries:
            read_csv(viewer_client.get(reverse(url_name), {"export": "csv"}))
        return len(queries)

    assert export_queries(3) == export_queries(300)


# --- The API: violations and compliance, CSV and JSON --------------------------------------------


def test_the_api_exports_the_filtered_violations_as_json_and_csv(viewer_api, lists, client, viewer_user):
    url = reverse("governance-violation-export")
    as_json = viewer_api.get(url, {"instance": "web-01"})
    assert_status(as_json, 200)
    assert as_json["Content-Type"] == "application/json"
    items = json.loads(b"".join(as_json.streaming_content))
    assert [(v["instance_name"], v["policy_name"]) for v in items] == [("web-01", "No telnet")]
    rows = read_csv(viewer_api.get(url, {"instance": "web-01", "format": "csv"}))
    # The API's CSV is the violations page's CSV.
    client.force_login(viewer_user)
    page_rows = read_csv(client.get(reverse("governance:violation_list"), {"instance": "web-01", "export": "csv"}))
    assert rows == page_rows and column(rows, "instance") == ["web-01"]
    assert b"".join(viewer_api.get(url, {"severity": "info"}).streaming_content) == b"[]"


def test_the_api_exports_compliance_scores_filtered_and_sorted(viewer_api, lists):
    url = reverse("governance-compliance-instances-export")
    rows = read_csv(viewer_api.get(url, {"tag": "env=prod", "sort": "instance", "format": "csv"}))
    assert column(rows, "instance") == ["web-01", "web-02", "web-03"]
    items = json.loads(b"".join(viewer_api.get(url, {"tag": "env=prod"}).streaming_content))
    assert sorted(i["instance_name"] for i in items) == ["web-01", "web-02", "web-03"]
    assert {"score", "met", "applicable", "states"} <= set(items[0])


def test_a_bad_export_filter_is_a_400_envelope_even_when_csv_was_asked_for(viewer_api, db):
    url = reverse("governance-violation-export")
    response = viewer_api.get(url, {"severity": "nope", "format": "csv"})
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid" and "severity" in response.json()["errors"]
    response = viewer_api.get(url, {"sort": "evidence"})
    assert response.status_code == 400 and "sort" in response.json()["errors"]
    response = viewer_api.get(reverse("governance-compliance-instances-export"), {"below": "x"})
    assert response.status_code == 400 and "below" in response.json()["errors"]


def test_the_api_export_needs_a_token(db):
    from rest_framework.test import APIClient

    response = APIClient().get(reverse("governance-violation-export"), {"format": "csv"})
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"
