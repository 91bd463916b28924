"""The production build serves every page: deploy/build.sh, gunicorn with DEBUG=false, HTTPS redirect
on behind a (simulated) TLS proxy, WhiteNoise serving the manifest-named static files.

Every page reachable from the dashboard (links and htmx panels) plus every URL pattern of the site
(ids filled with the seeded objects') is fetched as an admin, a viewer and an anonymous visitor:
no answer is a server error, anonymous visitors are sent to the sign-in page, and every static file
a page references is served.
"""

import html
import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.urls import URLPattern, URLResolver, get_resolver

from .production import HTTPS, Browser, ProductionPanel

pytestmark = pytest.mark.integration

LINK = re.compile(r'(?:href|src|hx-get)="([^"#]*)')
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")
HASHED = re.compile(r"\.[0-9a-f]{12}\.\w+$")  # ManifestStaticFilesStorage: name.<md5[:12]>.ext
NEVER_FOLLOW = ("/accounts/logout/", "/admin/logout/", "/static/")
PUBLIC = {"/accounts/login/", "/healthz", "/livez", "/metrics"}
MAX_PAGES = 700  # per persona; the seeded site has a few hundred


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    panel = ProductionPanel(tmp_path_factory.mktemp("production"))
    try:
        yield panel.start()
    finally:
        panel.stop()


def _routes(resolver=None, prefix=""):
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def pattern_urls() -> list[str]:
    """Every HTML URL pattern as a URL: no argument, or ids of the first seeded object of each kind
    (a fresh database numbers from 1) and the policy type that exists. The admin and the API are
    reached through their links (the admin index, the API docs page)."""
    urls = []
    for route in _routes():
        if route.startswith(("admin/", "api/")) or "(?P" in route or "<path:" in route:
            continue
        url = re.sub(r"<int:\w+>", "1", route)
        url = re.sub(r"<(?:str:)?policy_type>", "required_apps", url)
        assert "<" not in url, f"no value to try for {route}"
        urls.append("/" + url)
    return sorted(urls)


class Crawl:
    def __init__(self):
        self.status: dict[str, int] = {}
        self.location: dict[str, str] = {}
        self.assets: dict[str, str] = {}  # asset path -> the page that referenced it


def crawl(browser: Browser, start: list[str]) -> Crawl:
    """Breadth first over same-site links; each path once (the first query string seen for it)."""
    result, seen = Crawl(), set()
    queue = deque(start)
    while queue and len(result.status) < MAX_PAGES:
        url = queue.popleft()
        path = urlsplit(url).path
        if path in seen:
            continue
        seen.add(path)
        response = browser.get(url)
        result.status[url] = response.status_code
        if response.is_redirect:
            location = urlsplit(response.headers["Location"])
            result.location[url] = response.headers["Location"]
            if location.netloc in ("", urlsplit(browser.base).netloc):
                queue.append(location.path + (f"?{location.query}" if location.query else ""))
            continue
        if response.status_code != 200 or "text/html" not in response.headers.get("Content-Type", ""):
            continue
        for ref in LINK.findall(response.text):
            target = urlsplit(urljoin(url, html.unescape(ref)))
            if target.scheme not in ("", "http", "https") or target.netloc not in ("", urlsplit(browser.base).netloc):
                continue
            if target.path.startswith("/static/"):
                result.assets.setdefault(target.path, url)
            elif target.path and not target.path.startswith(NEVER_FOLLOW):
                queue.append(target.path + (f"?{target.query}" if target.query else ""))
    return result


@pytest.fixture(scope="module")
def crawls(panel):
    start = ["/", *pattern_urls(), "/admin/", "/api/docs/"]
    results = {}
    for persona, username in (("admin", "admin"), ("viewer", "vera"), ("anonymous", None)):
        browser = Browser(panel.base)
        if username:
            browser.sign_in(username, panel.passwords[username])
        results[persona] = crawl(browser, start)
    return results


def test_no_page_answers_a_server_error_to_an_admin_a_viewer_or_an_anonymous_visitor(panel, crawls):
    errors = {
        persona: {url: status for url, status in result.status.items() if status >= 500}
        for persona, result in crawls.items()
    }
    assert errors == {"admin": {}, "viewer": {}, "anonymous": {}}, panel.server_log()[-5000:]


def test_the_crawl_reached_the_whole_site(crawls):
    admin, viewer = crawls["admin"], crawls["viewer"]
    ok = [url for url, status in admin.status.items() if status == 200]
    assert len(ok) > 80, sorted(admin.status.items())
    for page in ("/", "/servers/1/", "/governance/policies/1/", "/governance/canary/1/", "/governance/gitops/1/"):
        assert admin.status.get(page) == 200, (page, admin.status.get(page))
    assert admin.status.get("/admin/") == 200 and admin.status.get("/api/docs/") == 200
    assert viewer.status.get("/") == 200
    assert viewer.status.get("/settings/users/") == 403  # admins only, refused in words rather than 500


def test_anonymous_visitors_are_sent_to_the_sign_in_page_from_every_page(crawls):
    anonymous = crawls["anonymous"]
    let_in = {
        url: status
        for url, status in anonymous.status.items()
        if status == 200 and urlsplit(url).path not in PUBLIC and not urlsplit(url).path.startswith("/admin/login/")
    }
    assert let_in == {}
    for url in pattern_urls():
        if url in PUBLIC:
            continue
        assert anonymous.status[url] == 302, (url, anonymous.status[url])
        assert urlsplit(anonymous.location[url]).path == "/accounts/login/", anonymous.location[url]


def test_every_static_file_a_page_references_is_served_under_its_manifest_name(panel, crawls):
    assets = {}
    for result in crawls.values():
        assets.update(result.assets)
    assert any("/vendor/bootstrap-5.3.9" in path for path in assets), sorted(assets)
    assert any(path.startswith("/static/admin/") for path in assets), "the admin's own files"
    problems, stylesheets = {}, []
    for path, page in sorted(assets.items()):
        response = requests.get(panel.base + path, headers=HTTPS, timeout=30)
        if response.status_code != 200 or not HASHED.search(path):
            problems[path] = (response.status_code, page)
        if path.endswith(".css"):
            stylesheets.append((path, response.text))
    for path, text in stylesheets:  # what the stylesheets load in turn (fonts, images)
        for ref in CSS_URL.findall(text):
            if ref.startswith(("data:", "http:", "https:", "#")):
                continue
            target = urljoin(path, ref).split("#")[0].split("?")[0]
            status = requests.get(panel.base + target, headers=HTTPS, timeout=30).status_code
            if status != 200:
                problems[target] = (status, path)
    assert problems == {}


def test_static_files_are_compressed_and_cached_for_ever(panel, crawls):
    path = next(p for p in crawls["admin"].assets if "/vendor/bootstrap-5.3.9" in p and p.endswith(".css"))
    response = requests.get(panel.base + path, headers={**HTTPS, "Accept-Encoding": "gzip"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "immutable" in response.headers["Cache-Control"]
    assert "sourceMappingURL" not in response.text


def test_plain_http_is_redirected_to_https_except_the_health_check(panel):
    page = requests.get(panel.base + "/accounts/login/", allow_redirects=False, timeout=30)
    assert page.status_code == 301
    assert page.headers["Location"] == f"https://127.0.0.1:{panel.port}/accounts/login/"
    health = requests.get(panel.base + "/healthz", allow_redirects=False, timeout=30)
    assert health.status_code in (200, 503), health.status_code  # answered, by status, not redirected
    live = requests.get(panel.base + "/livez", allow_redirects=False, timeout=30)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


def test_production_responses_carry_hsts_and_secure_cookies(panel):
    response = Browser(panel.base).get("/accounts/login/")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    cookie = response.headers["Set-Cookie"]
    assert "csrftoken=" in cookie and "Secure" in cookie


def test_an_error_page_shows_no_debug_information(panel):
    response = Browser(panel.base).get("/no-such-page/")
    assert response.status_code == 404
    assert "Traceback" not in response.text and "CELERY_BROKER_URL" not in response.text
    assert "DEBUG = True" not in response.text
