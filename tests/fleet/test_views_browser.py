"""The pages in a real headless Chromium: the behaviour that lives in static/js/app.js and htmx.

Pages must work under the Content-Security-Policy (no inline scripts): a violation shows up as a
console error, which fails the test.
"""

import os
import shutil

import pytest
from django.test import Client
from django.utils import timezone

from fleet import services
from fleet.choices import InstanceStatus
from fleet.models import Command, Instance
from tests.base import service_unavailable

pytestmark = [pytest.mark.browser, pytest.mark.integration]

# Playwright's sync API runs an event loop in this thread; the ORM calls below are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("playwright")
    executable = _chromium()
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as exc:  # no browser installed on this machine
            service_unavailable(f"Chromium ({exc.__class__.__name__})")
        yield browser
        browser.close()


@pytest.fixture
def page_as(browser, live_server):
    """page_as(user) → a Playwright page signed in as that user; console errors are collected."""
    pages = []

    def _open(user):
        client = Client()
        client.force_login(user)
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        page = context.new_page()
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        pages.append(page)
        return page

    yield _open
    for page in pages:
        page.context.close()


def make_instance(name, tags=(), status=InstanceStatus.ONLINE):
    instance = Instance.objects.create(name=name, status=status, last_seen_at=timezone.now(), os_version="24.04")
    instance.tags.set(services.tags_get_or_create(list(tags)))
    return instance


@pytest.mark.django_db(transaction=True)
def test_the_command_form_shows_the_fields_of_the_chosen_type_and_previews_the_target_live(
    page_as, live_server, operator_user
):
    make_instance("web-01", tags=["env=production"])
    make_instance("web-02", tags=["env=production"])
    make_instance("db-01", tags=["env=staging"])
    page = page_as(operator_user)
    page.goto(live_server.url + "/operations/new/")
    page.wait_for_selector("#target-preview [data-preview-count='3']")

    assert page.is_visible("#id_app") and page.is_visible("#id_version")
    assert not page.is_visible("#id_config_values")
    page.select_option("#id_kind", "set_config")
    assert page.is_visible("#id_config_values") and not page.is_visible("#id_app")

    assert not page.is_visible("#id_scope_tags")
    page.check("input[name=scope_kind][value=tags]")
    assert page.is_visible("#id_scope_tags") and not page.is_visible("#id_scope_groups")
    page.fill("#id_scope_tags", "env=production")
    page.wait_for_selector("#target-preview [data-preview-count='2']")
    assert "web-01" in page.inner_text("#target-preview") and "db-01" not in page.inner_text("#target-preview")

    page.fill("#id_config_values", "ssh.password_auth=false")
    page.click("button:has-text('Queue command')")
    page.wait_for_url("**/operations/*/")
    command = Command.objects.get()
    assert sorted(r.instance.name for r in command.runs.all()) == ["web-01", "web-02"]
    assert "Command queued" in page.inner_text(".alert-success")
    assert page.console_errors == []


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_draws_its_charts_and_refreshes_its_counts_by_itself(page_as, live_server, viewer_user, settings):
    # Any page can be a panel; the groups list stands in for governance's compliance panel.
    settings.FLEET_DASHBOARD_PANELS = ["fleet:group_list", "nosuchapp:panel"]
    make_instance("web-01")
    page = page_as(viewer_user)
    page.goto(live_server.url + "/")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.querySelector('[data-chart=chart-status]'))")
    page.wait_for_selector("#dashboard-panel-1 .empty-state")
    assert page.locator("[data-panel]").count() == 1
    assert page.locator("#dashboard-panel-1 .sidebar").count() == 0  # content only, no second shell
    assert page.inner_text("[data-stat=online]") == "1"
    make_instance("web-02")
    page.wait_for_function(
        "() => document.querySelector('[data-stat=online]').textContent.trim() === '2'", timeout=10000
    )
    # The charts survive the refresh: drawn again from the new data once htmx has settled the swap.
    page.wait_for_function(
        "() => { const c = Chart.getChart(document.querySelector('[data-chart=chart-status]'));"
        " return c && c.data.datasets[0].data[0] === 2; }"
    )
    # The panel was not reset to "Loading…" by the refresh around it (hx-preserve).
    assert page.locator("#dashboard-panel-1 .empty-state").count() == 1
    assert page.console_errors == []


@pytest.mark.django_db(transaction=True)
def test_the_servers_list_updates_a_status_without_a_reload(page_as, live_server, viewer_user):
    instance = make_instance("web-01")
    page = page_as(viewer_user)
    page.goto(live_server.url + "/servers/")
    page.wait_for_selector("#server-rows .badge-status-online")
    Instance.objects.filter(pk=instance.pk).update(status=InstanceStatus.OFFLINE)
    page.wait_for_selector("#server-rows .badge-status-offline", timeout=10000)
    assert page.console_errors == []


@pytest.mark.django_db(transaction=True)
def test_typing_in_the_apps_search_filters_the_servers_packages_without_a_reload(page_as, live_server, viewer_user):
    instance = make_instance("web-01")
    apps = [{"name": f"lib{i:04d}", "version": "1.0", "running": True} for i in range(3000)]
    Instance.objects.filter(pk=instance.pk).update(
        apps=[*apps, {"name": "openssl", "version": "3.0.13", "running": True}]
    )
    page = page_as(viewer_user)
    page.goto(f"{live_server.url}/servers/{instance.pk}/")
    assert page.locator("#server-apps tbody tr").count() == 50
    page.evaluate("() => { window.notReloaded = true; }")
    page.fill("#apps-q", "openss")
    page.wait_for_function("() => document.querySelectorAll('#server-apps tbody tr').length === 1")
    assert "openssl" in page.inner_text("#server-apps")
    assert "1 of 3001 match" in page.inner_text("#server-apps")
    page.fill("#apps-q", "lib")
    page.wait_for_selector("#server-apps a:has-text('Next')")
    page.click("#server-apps a:has-text('Next')")
    page.wait_for_selector("#server-apps :text('Page 2 of 60')")
    assert page.evaluate("() => window.notReloaded") is True
    assert page.console_errors == []
