"""Policy files in a real headless Chromium: Export from the list, paste it changed on the Import page,
see the dry run's diff, Apply; the policy page then shows the new version's diff."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from governance.models import Policy
from tests.governance.conftest import make_policy
from tests.hardening import browser
from tests.hardening.browser import log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

chromium = browser.chromium
page = browser.page


def test_export_edit_import_preview_and_apply_in_the_browser(admin_user, page):
    policy = make_policy(name="Need agent")
    log_in(page, admin_user)
    page.goto("/governance/policies/")
    with page.expect_download() as download:
        page.locator("#policy-export").click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert "name: Need agent" in exported

    page.goto("/governance/policies/import/")
    changed = exported.replace("- name: monitoring-agent", "- name: monitoring-agent\n      min_version: '3.1'")
    page.get_by_label("Or paste YAML").fill(changed)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#import-diff")).to_contain_text("Need agent")
    expect(page.locator("#import-diff")).to_contain_text("rules")
    assert Policy.objects.get().rules["apps"][0]["min_version"] is None
    screenshot(page, "policy-import-preview")

    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".alert-success")).to_contain_text("1 changed")
    assert Policy.objects.get().rules["apps"][0]["min_version"] == "3.1"

    page.goto(policy.get_absolute_url())
    expect(page.locator("#policy-versions .policy-version").first).to_contain_text("v2")
    expect(page.locator("#policy-versions .policy-diff").first).to_contain_text("min_version: '3.1'")
    screenshot(page, "policy-versions")
    assert page.errors == []


def test_a_bad_paste_shows_each_problem_with_file_and_line(admin_user, page):
    log_in(page, admin_user)
    page.goto("/governance/policies/import/")
    page.get_by_label("Or paste YAML").fill("name: X\ntype: required_apps\nrules:\n  apps: [{name: BAD NAME}]\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#import-errors")).to_contain_text("pasted.yaml, line 4")
    expect(page.locator("#import-apply")).to_have_count(0)
    assert not Policy.objects.exists()


def test_a_git_owned_policy_says_where_it_lives_and_cannot_be_edited(admin_user, page):
    from gitops.models import Repository

    repo = Repository.objects.create(name="fleet-config", url="ssh://git@127.0.0.1/x", private_key_encrypted="-")
    policy = make_policy(name="From Git")
    Policy.objects.filter(pk=policy.pk).update(
        git_repository=repo, git_path="policies/from-git.yaml", git_commit="ab" * 20
    )
    log_in(page, admin_user)
    page.goto(policy.get_absolute_url())
    expect(page.locator("#policy-git")).to_contain_text("fleet-config")
    expect(page.locator("#policy-git")).to_contain_text("policies/from-git.yaml")
    expect(page.locator("#policy-git")).to_contain_text("abababababab")
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    page.goto(f"/governance/policies/{policy.pk}/edit/")
    expect(page.locator("#policy-managed")).to_contain_text("change it there")
    expect(page.get_by_role("button", name="Save")).to_be_disabled()
    screenshot(page, "policy-git-owned-edit")
    assert page.errors == []
