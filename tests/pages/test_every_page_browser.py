"""Every page of the site in a real headless Chromium, as admin, operator and viewer: no console error,
no failed request (htmx parts and panels included), and a screenshot of each at 1366×768 under
screenshots/pages/ (git-ignored) for a person to look at."""

import pytest
from django.test import Client
from django.urls import reverse

from common.choices import Role
from tests.conftest import _serialize_shared_sqlite
from tests.hardening import browser

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

chromium = browser.chromium
VIEWPORTS = {"1366": {"width": 1366, "height": 768}, "1920": {"width": 1920, "height": 1080}}


def pages(site) -> list[tuple[str, str, str]]:
    """(name, url, the role it needs)."""
    s = site
    return [
        ("dashboard", reverse("fleet:dashboard"), Role.VIEWER),
        ("servers", reverse("fleet:server_list"), Role.VIEWER),
        ("servers-sorted-filtered", reverse("fleet:server_list") + "?tag=env%3Dprod&sort=-compliance", Role.VIEWER),
        ("server", s["server"].get_absolute_url(), Role.VIEWER),
        ("server-edit", reverse("fleet:server_edit", args=[s["server"].pk]), Role.ADMIN),
        ("groups", reverse("fleet:group_list"), Role.VIEWER),
        ("group", s["group"].get_absolute_url(), Role.VIEWER),
        ("group-new", reverse("fleet:group_create"), Role.ADMIN),
        ("tags", reverse("fleet:tag_list"), Role.VIEWER),
        ("tag-new", reverse("fleet:tag_create"), Role.OPERATOR),
        ("tokens", reverse("fleet:token_list"), Role.VIEWER),
        ("token", reverse("fleet:token_detail", args=[s["token"].pk]), Role.ADMIN),
        ("token-new", reverse("fleet:token_create"), Role.ADMIN),
        ("commands", reverse("fleet:command_list"), Role.VIEWER),
        ("command", s["command"].get_absolute_url(), Role.VIEWER),
        ("run", s["run"].get_absolute_url(), Role.VIEWER),
        ("command-new", reverse("fleet:command_create"), Role.OPERATOR),
        ("license", reverse("fleet:license"), Role.VIEWER),
        ("governance", reverse("governance:dashboard"), Role.VIEWER),
        ("scores", reverse("governance:score_list"), Role.VIEWER),
        ("policies", reverse("governance:policy_list"), Role.VIEWER),
        ("policy", s["policy"].get_absolute_url(), Role.VIEWER),
        ("policy-edit", reverse("governance:policy_edit", args=[s["policy"].pk]), Role.ADMIN),
        ("policy-remediation", reverse("governance:remediation_edit", args=[s["policy"].pk]), Role.VIEWER),
        ("policy-import", reverse("governance:policy_import"), Role.ADMIN),
        ("violation", reverse("governance:violation_detail", args=[s["violation"].pk]), Role.VIEWER),
        ("reports", reverse("governance:compliance_report"), Role.VIEWER),
        ("reports-by-group", reverse("governance:compliance_report") + "?kind=group", Role.VIEWER),
        ("policy-types", reverse("governance:policy_type_choose"), Role.ADMIN),
        ("policy-new-baseline", reverse("governance:policy_create", args=["baseline"]), Role.ADMIN),
        ("violations", reverse("governance:violation_list"), Role.VIEWER),
        ("violations-by-instance", reverse("governance:violation_list") + "?instance=web-01", Role.VIEWER),
        ("exceptions", reverse("governance:exception_list"), Role.VIEWER),
        ("exception-new", reverse("governance:exception_create"), Role.ADMIN),
        ("canaries", reverse("canary:list"), Role.VIEWER),
        ("canary", s["canary"].get_absolute_url(), Role.VIEWER),
        ("canary-new", reverse("canary:create"), Role.OPERATOR),
        ("gitops", reverse("gitops:list"), Role.VIEWER),
        ("gitops-conflicts", reverse("gitops:conflicts"), Role.VIEWER),
        ("gitops-config", reverse("gitops:config"), Role.VIEWER),
        ("gitops-connect", reverse("gitops:connect"), Role.ADMIN),
        ("gitops-run", reverse("gitops:run_detail", args=[s["sync_run"].pk]), Role.VIEWER),
        ("users", reverse("common:user_list"), Role.ADMIN),
        ("user-new", reverse("common:user_create"), Role.ADMIN),
        ("audit", reverse("common:audit_list"), Role.VIEWER),
        ("api-token", reverse("common:api_token"), Role.VIEWER),
        ("notifications", reverse("common:notification_list"), Role.VIEWER),
    ]


def open_as(chromium, live_server, user, viewport):
    client = Client()
    client.force_login(user)
    context = chromium.new_context(base_url=live_server.url, viewport=viewport)
    context.set_default_timeout(browser.DEFAULT_TIMEOUT_MS)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    tab = context.new_page()
    tab.problems = []
    tab.on("console", lambda m: m.type == "error" and tab.problems.append(f"console: {m.text}"))
    tab.on("pageerror", lambda e: tab.problems.append(f"page error: {e}"))
    tab.on("requestfailed", lambda r: tab.problems.append(f"request failed: {r.url} {r.failure}"))
    tab.on("response", lambda r: r.status >= 400 and tab.problems.append(f"HTTP {r.status}: {r.url}"))
    return tab


# Failures of the connection itself (not an answer of the panel): Chromium reports them for a socket the
# single-process test server closed under it. Only these earn a page a second load.
TRANSPORT_FAILURES = (
    "net::ERR_SOCKET_NOT_CONNECTED",
    "net::ERR_CONNECTION_RESET",
    "net::ERR_CONNECTION_CLOSED",
    "net::ERR_EMPTY_RESPONSE",
)


def _transport_failure(problem: str) -> bool:
    return any(code in problem for code in TRANSPORT_FAILURES)


def _visit(tab, url):
    # Leave the previous page first: its live parts may have a request in flight (a policy page polls
    # itself), which leaving aborts (net::ERR_ABORTED). That is the test moving on, not this page failing.
    tab.goto("about:blank")
    tab.wait_for_timeout(50)
    tab.problems.clear()
    response = tab.goto(url)
    tab.wait_for_load_state("networkidle")
    tab.wait_for_timeout(300)  # htmx's load-triggered parts (panels, previews) settle
    return response


@pytest.mark.parametrize("persona", ["admin", "operator", "viewer"])
def test_every_page_opens_without_a_console_error_or_a_failed_request(
    chromium, live_server, site, admin_user, operator_user, viewer_user, persona
):
    _serialize_shared_sqlite(live_server)
    user = {"admin": admin_user, "operator": operator_user, "viewer": viewer_user}[persona]
    problems = {}
    # Both screen sizes for the admin (who sees every page), the laptop size for the others.
    sizes = VIEWPORTS if persona == "admin" else {"1366": VIEWPORTS["1366"]}
    for size, viewport in sizes.items():
        tab = open_as(chromium, live_server, user, viewport)
        try:
            for name, url, role in pages(site):
                if not user.has_role(role):
                    continue
                response = _visit(tab, url)
                if tab.problems and all(_transport_failure(p) for p in tab.problems):
                    response = _visit(tab, url)  # the test server dropped a socket; the page gets one more try
                if response.status != 200:
                    tab.problems.append(f"HTTP {response.status}")
                if tab.problems:
                    problems[f"{name} ({url})"] = list(tab.problems)
                browser.SCREENSHOTS.joinpath("pages").mkdir(parents=True, exist_ok=True)
                tab.screenshot(path=str(browser.SCREENSHOTS / "pages" / f"{persona}-{size}-{name}.png"), full_page=True)
        finally:
            tab.context.close()
    assert problems == {}
