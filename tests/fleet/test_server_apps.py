"""The server page's apps table for a real server's 1,000–3,000 packages: searched by name on the server,
paginated, swapped in by htmx; and the pages that list servers never read the reported state."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from fleet.views import APPS_PER_PAGE
from tests.base import assert_status

from .helpers import DEFAULT_STATE, make_instance

PACKAGES = 3_000


def package_state(count=PACKAGES):
    apps = [{"name": f"lib{i:04d}-dev", "version": f"1.{i}.0-1", "running": i % 10 != 0} for i in range(count)]
    apps += [{"name": "OpenSSL", "version": "3.0.13-0ubuntu3", "running": True}]
    return {**DEFAULT_STATE, "apps": apps}


@pytest.fixture
def server(db):
    return make_instance("web-01", state=package_state())


def apps_html(client, server, **params):
    response = client.get(reverse("fleet:server_apps", args=[server.pk]), params, HTTP_HX_REQUEST="true")
    assert_status(response, 200)
    return response


def shown(response) -> list[str]:
    return [a["name"] for a in response.context["apps_page"].object_list]


def test_the_server_page_shows_one_page_of_apps_with_the_total(viewer_client, server):
    response = viewer_client.get(reverse("fleet:server_detail", args=[server.pk]))
    assert_status(response, 200)
    names = shown(response)
    assert len(names) == APPS_PER_PAGE
    assert names == sorted(names)
    body = response.content.decode()
    assert f"{PACKAGES + 1} apps" in body
    assert "Page 1 of 61" in body
    assert body.count('<tr><td class="text-break">') == APPS_PER_PAGE


def test_the_search_filters_by_name_on_the_server_in_any_case(viewer_client, server):
    response = apps_html(viewer_client, server, q="openssl")
    assert shown(response) == ["OpenSSL"]
    assert f"1 of {PACKAGES + 1} match" in response.content.decode()
    assert len(shown(apps_html(viewer_client, server, q="lib00"))) == APPS_PER_PAGE  # lib0000–lib0099: 100 match
    assert apps_html(viewer_client, server, q="lib00").context["apps_page"].paginator.count == 100


def test_the_state_filter_and_the_pages_narrow_the_same_list(viewer_client, server):
    stopped = apps_html(viewer_client, server, state="stopped")
    assert stopped.context["apps_page"].paginator.count == PACKAGES // 10
    page_two = apps_html(viewer_client, server, q="lib", page=2)
    assert shown(page_two)[0] == f"lib{APPS_PER_PAGE:04d}-dev"
    assert f'hx-get="/servers/{server.pk}/apps/?q=lib&state=&page=3"' in page_two.content.decode()


def test_a_search_that_matches_nothing_says_so(viewer_client, server):
    response = apps_html(viewer_client, server, q="no-such-package")
    assert "No app matches" in response.content.decode()


def test_a_page_number_out_of_range_shows_the_last_page(viewer_client, server):
    response = apps_html(viewer_client, server, q="openssl", page=99)
    assert shown(response) == ["OpenSSL"]


def test_the_apps_table_needs_a_signed_in_active_account(client, outsider_user, server):
    url = reverse("fleet:server_apps", args=[server.pk])
    assert client.get(url).status_code == 302
    client.force_login(outsider_user)  # deactivated: treated as signed out
    assert client.get(url).status_code == 302


def test_a_server_without_apps_shows_the_empty_state_without_a_search_box(viewer_client, db):
    instance = make_instance("bare", state={"os_version": "24.04", "apps": []})
    body = viewer_client.get(reverse("fleet:server_detail", args=[instance.pk])).content.decode()
    assert "No applications reported." in body
    assert "apps-search" not in body


def _state_read(queries) -> bool:
    return any('"apps"' in q["sql"] and "SELECT" in q["sql"] for q in queries)


@pytest.mark.parametrize("page", ["fleet:server_list", "fleet:dashboard"])
def test_pages_that_list_servers_never_read_their_reported_state(viewer_client, server, page):
    with CaptureQueriesContext(connection) as queries:
        assert_status(viewer_client.get(reverse(page)), 200)
    assert not _state_read(queries.captured_queries)


def test_the_servers_live_status_refresh_does_not_read_the_reported_state(viewer_client, server):
    with CaptureQueriesContext(connection) as queries:
        response = viewer_client.get(reverse("fleet:server_detail", args=[server.pk]), HTTP_HX_REQUEST="true")
    assert_status(response, 200)
    assert not _state_read(queries.captured_queries)


def test_the_api_list_does_not_return_or_read_the_reported_state(admin_api, server):
    with CaptureQueriesContext(connection) as queries:
        body = admin_api.get("/api/fleet/instances").json()
    assert "apps" not in body["results"][0]
    assert not _state_read(queries.captured_queries)
