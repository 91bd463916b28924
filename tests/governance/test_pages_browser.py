"""The policy page in a real headless Chromium: after Save, the scope is evaluated by a real Celery
worker and the page shows the figures and violations by itself, without a reload."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from fleet.choices import InstanceStatus
from fleet.models import Instance
from tests.hardening import browser
from tests.hardening.browser import explained_by, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

chromium = browser.chromium
page = browser.page
WORKER_MS = 45_000


@pytest.fixture
def queued_tasks(postgres_required, redis_url):
    """Tasks go to Redis and wait there until the test starts a worker (what happens after a deploy
    when the worker is slow to pick them up)."""
    from config.celery import app

    eager, app.conf.task_always_eager = app.conf.task_always_eager, False
    app.control.purge()
    yield
    app.conf.task_always_eager = eager


def test_violations_appear_on_the_policy_page_without_a_reload_once_the_worker_has_evaluated(
    queued_tasks, celery_worker_factory, admin_user, page
):
    apps = [{"name": "outdated-db", "version": "1.4", "running": True}]
    for name, installed in (("db-01", apps), ("db-02", [])):
        Instance.objects.create(
            name=name, status=InstanceStatus.ONLINE, last_seen_at=timezone.now(), os_version="24.04", apps=installed
        )
    log_in(page, admin_user)
    page.goto("/governance/policies/new/blocked_apps/")
    page.get_by_label("Name", exact=True).fill("No outdated databases")
    page.get_by_label("Blocked apps", exact=True).fill("outdated-db < 2.0")
    page.get_by_role("button", name="Save").click()

    # No worker yet: the page says the evaluation is pending instead of "No violations".
    expect(page.locator("#policy-evaluating")).to_be_visible()
    expect(page.locator("#policy-live")).not_to_contain_text("No violations")
    page.evaluate("window.__notReloaded = true")

    worker = celery_worker_factory()
    with explained_by(worker):
        expect(page.locator("#policy-live tbody tr")).to_have_count(1, timeout=WORKER_MS)
    row = page.locator("#policy-live tbody tr")
    expect(row).to_contain_text("db-01")
    expect(row).to_contain_text("below 2.0")
    expect(page.locator("#policy-live .stat-value").first).to_have_text("50.0%")
    assert page.evaluate("window.__notReloaded") is True  # the same document: updated in place
    screenshot(page, "policy-live-after-save")
    assert page.errors == []
