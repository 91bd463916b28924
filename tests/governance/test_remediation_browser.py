"""Enforce mode in a real headless Chromium: the policy page loads its remediation panel, the settings
page previews the commands and the typed rails before saving, and saving switches the policy to enforce."""

import pytest
from playwright.sync_api import expect

from governance.models import RemediationSettings
from tests.hardening import browser
from tests.hardening.browser import log_in, screenshot

from .conftest import make_policy

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

chromium = browser.chromium
page = browser.page


def test_an_admin_previews_and_switches_a_policy_to_enforce(admin_user, make_instance, page):
    for _ in range(2):
        make_instance(apps=[])
    policy = make_policy(admin_user, rules={"apps": [{"name": "monitoring-agent", "min_version": "2.4.0"}]})
    log_in(page, admin_user)
    page.goto(f"/governance/policies/{policy.pk}/")
    panel = page.locator("#remediation-panel")
    expect(panel).to_contain_text("audit")
    panel.get_by_role("link", name="Remediation settings").click()
    expect(page.locator("#remediation-preview")).to_contain_text("install_app monitoring-agent → 2.4.0 on 2")
    page.get_by_label("Mode").select_option("enforce")
    page.get_by_label("At most N instances at once").fill("1")
    page.get_by_label("From").fill("22:00")
    page.get_by_label("Until").fill("04:00")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#remediation-rails-summary")).to_contain_text("22:00–04:00")
    expect(page.locator("#remediation-rails-summary")).to_contain_text("Europe/Berlin")
    assert not RemediationSettings.objects.filter(pk=policy.pk, window_timezone="Europe/Berlin").exists()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#remediation-panel")).to_contain_text("enforce")
    expect(page.locator("#remediation-budget")).to_contain_text("In flight: 0 of 1")
    policy.refresh_from_db()
    assert policy.mode == "enforce"
    screenshot(page, "remediation-enforce-saved")
    assert page.errors == []
