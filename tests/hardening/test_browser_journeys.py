"""Four journeys a person makes, in Debian's Chromium driven by Playwright, against the real parts:
PostgreSQL, Redis, real Celery workers (and beat), a simulated fleet of agents with real health
endpoints, and a real sshd serving a Git repository.

Everything the journey is about happens by typing and clicking; only what a person would not do in the
panel (starting servers, committing to Git, adding a deploy key on the Git host) is done by the test.
Each journey ends with a screenshot in screenshots/ and asserts what is on the screen.
"""

import re
import subprocess

import pytest
from playwright.sync_api import expect

from fleet.models import Instance
from tests.conftest import wait_for
from tests.gitops import conftest as gitops_fixtures

from . import browser
from .browser import explained_by, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Fixtures: Debian's Chromium and a fresh tab; the real sshd and Git repository of the GitOps tests.
chromium = browser.chromium
page = browser.page
sshd = gitops_fixtures.sshd
git_repo = gitops_fixtures.git_repo

# Generous upper bounds for things done by a worker on its own schedule; every journey stays well
# under two minutes because each wait ends as soon as the page shows the result.
WORKER_MS = 45_000


@pytest.fixture
def real_services(postgres_required, redis_url):
    """PostgreSQL and Redis must be there (skip locally without them, fail in CI). Tasks go through
    Redis to real workers; tasks a previous run left in this Redis database are purged first."""
    from config.celery import app

    eager, app.conf.task_always_eager = app.conf.task_always_eager, False
    app.control.purge()
    yield
    app.conf.task_always_eager = eager


def nav(page, label: str) -> None:
    """Click an entry of the sidebar."""
    page.locator(".sidebar").get_by_role("link", name=label, exact=True).click()


def online_count() -> int:
    return Instance.objects.filter(status="online").count()


def test_a_person_logs_in_and_sees_the_simulated_fleet_online_on_the_dashboard(
    real_services, simulated_fleet, admin_user, page
):
    simulated_fleet(count=3, seed=0)
    wait_for(lambda: online_count() == 3, timeout=30, message="3 instances online")

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))  # the dashboard asks for a login first
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")

    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet dashboard")).to_be_visible()
    expect(page.locator("[data-stat=online]")).to_have_text("3")
    expect(page.locator("[data-stat=offline]")).to_have_text("0")
    servers = page.locator("#dashboard-live table").first
    for name in ("sim-01", "sim-02", "sim-03"):
        expect(servers.get_by_role("row").filter(has_text=name)).to_contain_text("Online")
    expect(page.locator("#dashboard-live")).to_contain_text("Every server is reporting.")
    screenshot(page, "journey-1-dashboard")
    assert page.errors == []


def test_a_policy_created_in_the_browser_shows_its_violations_found_by_the_worker(
    real_services, simulated_fleet, celery_worker_factory, admin_user, page
):
    # Seed 0: sim-01 and sim-02 run outdated-db 1.4, sim-03 does not.
    simulated_fleet(count=3, seed=0)
    wait_for(lambda: online_count() == 3, timeout=30, message="3 instances online")
    worker = celery_worker_factory()
    log_in(page, admin_user)

    nav(page, "Policies")
    page.get_by_role("link", name="Create Policy").click()
    page.get_by_role("link", name="Create blocked apps policy").click()
    page.get_by_label("Name", exact=True).fill("No outdated databases")
    page.get_by_label("Blocked apps", exact=True).fill("outdated-db < 2.0")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Policy 'No outdated databases' created; its scope is being evaluated."
    )

    nav(page, "Violations")
    table = page.locator("#violation-table")
    # The worker evaluates the scope; the table refreshes itself (htmx) until the violations are there.
    rows = table.locator("tbody tr")
    with explained_by(worker):
        expect(rows).to_have_count(2, timeout=WORKER_MS)
    for name in ("sim-01", "sim-02"):
        row = rows.filter(has_text=name)
        expect(row).to_contain_text("critical")
        expect(row).to_contain_text("open")
        expect(row).to_contain_text("No outdated databases")
        expect(row).to_contain_text("outdated-db")
    expect(table).not_to_contain_text("sim-03")
    screenshot(page, "journey-2-violations")
    assert page.errors == []


def test_a_canary_started_in_the_browser_with_a_failing_version_rolls_back_by_itself(
    real_services, enterprise_license, simulated_fleet, celery_worker_factory, operator_user, page
):
    # Seed 2: every instance runs monitoring-agent 2.3.1. A version with "+fail" makes /health answer 500.
    simulated_fleet(count=3, seed=2, heartbeat_interval=0.5, command_poll_interval=0.3)
    wait_for(lambda: online_count() == 3, timeout=30, message="3 instances online")
    fast = {"CANARY_RECHECK_SECONDS": "1", "CANARY_PROBE_TIMEOUT": "0.5"}
    worker = celery_worker_factory(extra_env=fast)
    beat = celery_worker_factory(beat=True, extra_env=fast)
    log_in(page, operator_user)

    nav(page, "Canary Deployments")
    page.get_by_role("link", name="New canary deployment").click()
    page.get_by_label("Name", exact=True).fill("monitoring-agent 2.5 to everyone")
    page.get_by_label("Change", exact=True).select_option("update_app")
    page.get_by_label("App", exact=True).fill("monitoring-agent")
    page.get_by_label("Version", exact=True).fill("2.5.0+fail")
    page.get_by_label("Canary percentage").fill("50")
    page.get_by_label("Check interval (seconds)").fill("2")
    page.get_by_label("Max duration (seconds)").fill("20")
    page.get_by_role("button", name="Start canary").click()
    expect(page.get_by_role("alert").first).to_contain_text("started: the change was sent to the canary instances")
    expect(page.locator("#canary-phase")).to_have_text(re.compile("Canary|Evaluation"))

    # Nobody touches anything now: the evaluation fails and the rollback happens by itself; the page
    # refreshes its live part every 3 s.
    with explained_by(worker, beat):
        expect(page.locator("#canary-phase")).to_have_text("Rolled back", timeout=90_000)
    reason = page.locator("#failure-reason")
    expect(reason).to_contain_text("The success threshold was not met within the max duration (20 s)")
    expect(reason).to_contain_text("health_check: HTTP 500")
    expect(page.locator("#rollback-note")).to_contain_text("Rollback verified")
    expect(page.get_by_text("No rollout: the canary was rolled back.")).to_be_visible()
    page.reload()  # the buttons above the live part are not refreshed in place
    expect(page.locator("#canary-phase")).to_have_text("Rolled back")
    expect(page.get_by_role("button", name="Roll back")).to_have_count(0)
    expect(page.get_by_role("button", name="Promote to all instances")).to_have_count(0)
    screenshot(page, "journey-3-canary-rolled-back")
    assert page.errors == []


def fingerprint_of(public_key_path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key_path)], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]  # "256 SHA256:… comment (ED25519)"


def test_a_repository_connected_in_the_browser_syncs_and_a_conflict_is_resolved_by_clicking(
    real_services, enterprise_license, sshd, git_repo, celery_worker_factory, admin_user, page, settings, tmp_path
):
    settings.VAR_DIR = tmp_path / "var"
    worker = celery_worker_factory(extra_env={"VAR_DIR": str(settings.VAR_DIR)})
    git_repo.write_config("fleet.yaml", {"ntp.server": "pool.example", "ssh.password_auth": False})
    first_sha = git_repo.commit("first")
    log_in(page, admin_user)

    # Connect with a key pair generated by the panel; the panel fetches the host key for confirmation.
    nav(page, "GitOps")
    page.get_by_role("link", name="Connect Repository").click()
    page.get_by_label("Name", exact=True).fill("fleet-config")
    page.get_by_label("Repository URL").fill(sshd.url(git_repo))
    expect(page.get_by_label("Key pair generated in the panel (deploy key)")).to_be_checked()
    page.get_by_label("Sync interval (seconds)").fill("60")
    page.get_by_role("button", name="Continue").click()
    confirmation = page.locator("#host-key-confirmation")
    expect(confirmation).to_contain_text("Confirm the server's SSH host key")
    # The person compares the fingerprint with the server's own (ssh-keygen -lf on the server).
    expect(confirmation).to_contain_text(fingerprint_of(sshd.host_key_path.with_suffix(".pub")))

    # … and adds the shown public key as a deploy key on the Git host.
    public_key = page.get_by_label("Public key").input_value()
    assert public_key.startswith("ssh-ed25519 ")
    sshd.authorize(public_key)
    page.get_by_role("button", name="Trust this host key").click()
    expect(page.get_by_role("alert").first).to_contain_text("pinned. The sync is queued.")
    live = page.locator("#repository-live")
    with explained_by(worker):
        expect(live).to_contain_text(first_sha, timeout=WORKER_MS)
    expect(live).to_contain_text("In sync")

    # The panel changes a key that Git also sets …
    nav(page, "GitOps")
    page.get_by_role("link", name="Desired configuration").click()
    page.locator("#id_level").select_option("fleet")
    page.get_by_label("Key", exact=True).fill("ntp.server")
    page.get_by_label("Value", exact=True).fill("panel.example")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert").first).to_contain_text("Saved")
    expect(page.get_by_role("row").filter(has_text="ntp.server")).to_contain_text("panel differs from Git")

    # … and Git changes it to something else: the next sync stops at a conflict.
    git_repo.write_config("fleet.yaml", {"ntp.server": "git.example", "ssh.password_auth": False})
    second_sha = git_repo.commit("second")
    nav(page, "GitOps")
    page.get_by_role("link", name="fleet-config").first.click()
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("alert").first).to_contain_text("A sync of fleet-config is queued.")
    with explained_by(worker):
        expect(live).to_contain_text("Paused: conflicts to resolve", timeout=WORKER_MS)
    expect(live).to_contain_text(second_sha)  # the branch head, not applied
    expect(live).to_contain_text("not applied")

    nav(page, "GitOps")
    page.get_by_role("link", name=re.compile(r"^Conflicts( \d+)?$")).click()  # not the table's sortable "Conflicts ↕"
    card = page.locator(".conflict-card")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("ntp.server")
    expect(card).to_contain_text("pool.example")  # base: last synced from Git
    expect(card).to_contain_text("panel.example")
    expect(card).to_contain_text("git.example")
    card.get_by_role("button", name="Take Git value").click()
    expect(page.get_by_role("alert").first).to_contain_text("Resolved")
    expect(page.get_by_text("No open conflicts")).to_be_visible()

    nav(page, "GitOps")
    page.get_by_role("link", name="Desired configuration").click()
    row = page.get_by_role("row").filter(has_text="ntp.server")
    expect(row).to_contain_text("git.example")
    expect(row).not_to_contain_text("panel differs from Git")

    # With no conflict left, the paused sync carries on by itself and applies the second commit.
    nav(page, "GitOps")
    page.get_by_role("link", name="fleet-config").first.click()
    with explained_by(worker):
        expect(live).to_contain_text("In sync", timeout=WORKER_MS)
    expect(live).to_contain_text(second_sha)
    expect(live).not_to_contain_text("not applied")
    screenshot(page, "journey-4-gitops-in-sync-after-the-conflict")
    assert page.errors == []
