"""Shared pieces for the browser journeys: Debian's Chromium driven by Playwright, a person's login,
screenshots in the git-ignored `screenshots/` folder at the repository root.

Playwright's sync API runs an event loop in the test thread, so Django's async-safety guard is relaxed
for the ORM calls the tests make between browser steps (DJANGO_ALLOW_ASYNC_UNSAFE).
"""

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.base import service_unavailable

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Playwright's default for every wait and expectation (ms): long enough for a real worker, bounded.
DEFAULT_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per module; each test gets its own context (cookies) in `page`."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("playwright (pip install playwright)")
    if not Path(CHROMIUM).exists():
        service_unavailable(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:  # a Chromium that cannot start is a missing service, not a failed journey
            service_unavailable(f"Chromium ({exc.__class__.__name__}: {exc})")
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server):
    """A fresh browser tab (no session yet) on the live server; page errors are collected in
    `page.errors` (a CSP violation or a broken script shows up there)."""
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1360, "height": 1000})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    yield tab
    context.close()


def log_in(page, user, password: str | None = None) -> None:
    """Sign in through the login form, as a person does (the personas' password is pw-<username>)."""
    from playwright.sync_api import expect

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(password or f"pw-{user.username}")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign in")).to_have_count(0)


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as screenshots/<name>.png (the folder is git-ignored)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def explained_by(*processes):
    """A failed expectation inside the block also prints the end of these processes' logs (a worker's
    traceback says more than "timed out")."""
    try:
        yield
    except AssertionError as exc:
        logs = "\n".join(f"--- {' '.join(p.args[:1])} log ---\n{p.output()[-4000:]}" for p in processes)
        raise AssertionError(f"{exc}\n{logs}") from exc
