"""The policy form's Mode in a real headless Chromium: the rails appear only while Enforce is chosen, the
form's Preview lists the commands and the rails (or the rails' errors) before saving, and one Save stores
the policy in enforce mode with its rails."""

import pytest
from playwright.sync_api import expect

from governance.models import Policy, RemediationSettings
from tests.hardening import browser
from tests.hardening.browser import log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

chromium = browser.chromium
page = browser.page


def test_an_admin_creates_an_enforce_policy_seeing_commands_and_rails_before_saving(admin_user, make_instance, page):
    for _ in range(2):
        make_instance(apps=[])
    log_in(page, admin_user)
    page.goto("/governance/policies/new/required_apps/")
    rails = page.locator("#policy-rails")
    expect(rails).to_be_hidden()  # audit: nothing to configure
    page.get_by_label("Name", exact=True).fill("Agent everywhere")
    page.get_by_label("Required apps", exact=True).fill("monitoring-agent >= 2.4.0")
    page.get_by_label("Enforce", exact=True).check()
    expect(rails).to_be_visible()
    rails.get_by_label("At most N instances at once").fill("1")
    rails.get_by_label("Time zone").fill("Mars/Olympus")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#policy-preview")
    expect(preview.locator("#remediation-preview")).to_contain_text("install_app monitoring-agent → 2.4.0 on 2")
    expect(preview.locator("#rails-errors")).to_contain_text("Unknown time zone 'Mars/Olympus'")
    rails.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Preview").click()
    expect(preview.locator("#remediation-rails-summary")).to_contain_text("Europe/Berlin")
    screenshot(page, "policy-form-enforce-preview")
    assert not Policy.objects.exists()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#remediation-panel")).to_contain_text("enforce")
    policy = Policy.objects.get()
    assert policy.mode == "enforce"
    assert RemediationSettings.objects.get(pk=policy.pk).window_timezone == "Europe/Berlin"
    assert page.errors == []
