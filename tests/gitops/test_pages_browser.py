"""The GitOps pages in a real headless Chromium, under the Content-Security-Policy."""

import os
import shutil

import pytest
from django.test import Client

from gitops import services, tasks
from gitops.choices import ConflictStrategy, Level, SyncStatus
from gitops.models import Conflict, Repository, SyncRun
from tests.base import service_unavailable

from .conftest import sync

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
SHOTS = os.environ.get("GITOPS_SCREENSHOTS")  # a directory to keep screenshots in, for a person to look at


@pytest.fixture
def page(live_server, admin_user):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("playwright")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(
                executable_path=os.environ.get("CHROMIUM")
                or shutil.which("chromium")
                or shutil.which("chromium-browser"),
                args=["--no-sandbox"],
            )
        except Exception as exc:  # no browser on this machine
            service_unavailable(f"Chromium ({exc.__class__.__name__})")
        client = Client()
        client.force_login(admin_user)
        context = browser.new_context(viewport={"width": 1300, "height": 1000})
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        pg = context.new_page()
        pg.console_errors = []
        pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
        pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
        yield pg
        browser.close()


def shot(page, name):
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


def test_the_dashboard_detail_and_conflict_pages_work_in_a_browser(
    page, live_server, connect, git_repo, fleet, admin_user
):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "a"}, {"monitoring-agent": "1.4.2"})
    git_repo.write_config("groups/web.yaml", {"nginx.workers": 4})
    git_repo.commit()
    repo = connect(strategy=ConflictStrategy.MANUAL)
    assert sync(repo).status == SyncStatus.APPLIED
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="ntp.server", value="panel.example")
    git_repo.write_config(
        "fleet.yaml", {"ssh.password_auth": False, "ntp.server": "git.example"}, {"monitoring-agent": "1.4.2"}
    )
    git_repo.commit()
    assert sync(repo).status == SyncStatus.PAUSED

    page.goto(live_server.url + "/governance/gitops/")
    assert "fleet-config" in page.inner_text("#repository-rows")
    assert "panel.example" in page.inner_text(".conflict-card") and "git.example" in page.inner_text(".conflict-card")
    shot(page, "gitops-list")
    page.goto(live_server.url + f"/governance/gitops/{repo.pk}/")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.querySelector('[data-chart=sync-chart]'))")
    shot(page, "gitops-detail")
    page.goto(live_server.url + "/governance/gitops/config/")
    shot(page, "gitops-config")
    page.goto(live_server.url + f"/governance/gitops/runs/{repo.runs.first().pk}/")
    shot(page, "gitops-run")

    page.goto(live_server.url + "/governance/gitops/conflicts/")
    page.click("button:has-text('Take Git value')")
    page.wait_for_selector(".alert-success")
    assert Conflict.objects.get().resolution == "git"
    assert page.console_errors == []


def test_the_connect_form_leads_to_the_host_key_confirmation(
    page, live_server, sshd, git_repo, enterprise_license, settings_dir
):
    page.goto(live_server.url + "/governance/gitops/connect/")
    page.fill("#id_name", "cfg")
    page.fill("#id_url", sshd.url(git_repo))
    shot(page, "gitops-connect")
    page.click("button:has-text('Continue')")
    page.wait_for_selector("text=Fetching the server's host key")
    tasks.scan_host_key(Repository.objects.get().pk)  # what the worker does; the page picks it up live
    page.wait_for_selector("#host-key-confirmation")
    assert "SHA256:" in page.inner_text("#host-key-confirmation")
    shot(page, "gitops-confirm")
    page.click("button:has-text('Trust this host key')")
    page.wait_for_selector(".alert-success")
    assert "pinned" in page.inner_text(".alert-success")
    assert page.console_errors == []


def test_the_preview_button_shows_what_a_sync_would_do_when_the_worker_is_done(
    page, live_server, connect, git_repo, fleet
):
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    git_repo.commit()
    repo = connect(strategy=ConflictStrategy.GIT_WINS)
    assert sync(repo).status == SyncStatus.APPLIED
    git_repo.write_config("fleet.yaml", {"ntp.server": "b"}, {"monitoring-agent": "2.0"})
    git_repo.commit()

    page.goto(live_server.url + f"/governance/gitops/{repo.pk}/")
    page.click("button:has-text('Preview')")
    page.wait_for_selector("text=is previewing the sync")
    tasks.preview_repository(SyncRun.objects.get(dry_run=True).pk)
    page.wait_for_selector("text=Previewed (nothing applied)")

    assert "update_app" in page.inner_text("main") and "changed" in page.inner_text("main")
    shot(page, "gitops-preview")
    assert page.console_errors == []
