"""Who may do what: every URL of the URL configuration × every persona → the expected status.

URLs are enumerated from the resolver (HTML and API alike), so a new endpoint is covered without
anyone remembering to add it. Expectations come from rules, with the few endpoints where a lower
role may write listed explicitly below; everything else that writes is admin-only.
"""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from common.choices import ROLE_RANK, Role
from common.views import RoleRequiredMixin
from fleet import services as fleet_services
from fleet.choices import ScopeKind
from fleet.scopes import Scope
from tests.base import api_key_for

WRITE_METHODS = ("post", "put", "patch", "delete")
SAFE = ("get",)
# API writes open to operators (commands, canaries, syncs) or to every user (their own notifications).
OPERATOR_WRITES = {
    ("post", "api/fleet/commands"),
    ("post", "api/fleet/command-runs/ID/revert"),
    ("post", "api/fleet/canary"),
    ("post", "api/fleet/canary/ID/promote"),
    ("post", "api/fleet/canary/ID/rollback"),
    ("post", "api/fleet/canary/ID/approve"),
    ("post", "api/fleet/canary/ID/pause"),
    ("post", "api/fleet/canary/ID/resume"),
    ("post", "api/governance/gitops/ID/sync"),
    ("post", "api/governance/gitops/ID/sync-to-revision"),
    ("post", "api/governance/gitops/ID/preview"),
}
EVERYONE_WRITES = {("post", "api/notifications/mark-read"), ("post", "api/notifications/ID/read")}
# Reachable without a user session, each with its own reason.
PUBLIC = {
    "accounts/login/": "the login page",
    "accounts/logout/": "logging out needs no role",
    "healthz": "load-balancer probe, says nothing about the fleet",
    "livez": "process liveness probe, says nothing at all",
    "metrics": "own bearer-token check (tested in tests/common/test_metrics.py)",
}
# API endpoints authenticated by a signature instead of a user: anyone without it gets 403.
SIGNATURE_AUTHENTICATED = {"api/governance/gitops/ID/webhook": "push webhooks (tests/gitops/test_webhooks.py)"}
ADMIN_ONLY_PAGES = {"settings/users/", "settings/users/ID/api-token/revoke/"}
# Reads that only admins may make: the user directory.
ADMIN_ONLY_READS = {"api/users", "api/users/ID"}


def _concrete(route: str) -> str:
    route = route.replace("^", "").replace("$", "")
    route = re.sub(r"\(\?P<[^>]+>[^)]+\)", "ID", route)
    route = re.sub(r"<(?:\w+:)?\w+>", "ID", route)
    return route


def _walk(resolver, prefix=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield _concrete(prefix + str(pattern.pattern)), pattern.callback


def _methods(callback) -> list[str]:
    actions = getattr(callback, "actions", None)
    if actions:  # a DRF viewset route
        return sorted(m for m in actions if m != "head")
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is None:
        return ["get"]
    return sorted(m for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m))


ENDPOINTS = sorted(
    {
        (route, method, callback)
        for route, callback in _walk(get_resolver())
        if not route.startswith("admin/") and "(?P<format>" not in route
        for method in _methods(callback)
    },
    key=lambda e: (e[0], e[1]),
)
API = [
    (r, m, c)
    for r, m, c in ENDPOINTS
    if r.startswith("api/") and not r.startswith("api/agent/") and r not in SIGNATURE_AUTHENTICATED
]
SIGNED = [(r, m, c) for r, m, c in ENDPOINTS if r in SIGNATURE_AUTHENTICATED]
AGENT = [(r, m, c) for r, m, c in ENDPOINTS if r.startswith("api/agent/")]
HTML = [(r, m, c) for r, m, c in ENDPOINTS if not r.startswith("api/") and r not in PUBLIC and m in ("get", "post")]


def _url(route: str, instance_id=999999) -> str:
    return "/" + route.replace("ID", str(instance_id))


def _call(client, method, route, **extra):
    return getattr(client, method)(_url(route), data={} if method != "get" else None, **extra)


@pytest.fixture
def personas(db, admin_user, operator_user, viewer_user, enterprise_license):
    tokens = {u.role: api_key_for(u) for u in (admin_user, operator_user, viewer_user)}
    return tokens


@pytest.fixture
def agents(db, admin_user):
    token, plaintext = fleet_services.registration_token_create(actor=admin_user, name="matrix")
    a, cred_a = fleet_services.agent_register(token=plaintext, name="agent-a", address="127.0.0.1:1")
    b, cred_b = fleet_services.agent_register(token=plaintext, name="agent-b", address="127.0.0.1:2")
    command = fleet_services.command_create(
        actor=admin_user,
        kind="restart_app",
        params={"app": "nginx"},
        scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=(a.pk,)),
    )
    return {"a": cred_a, "b": cred_b, "run_of_a": command.runs.get().pk}


def test_the_url_configuration_has_api_html_and_agent_endpoints():
    assert len(API) > 20 and len(HTML) > 10 and len(AGENT) >= 4


@pytest.mark.parametrize("route,method,callback", API, ids=[f"{m.upper()} {r}" for r, m, _ in API])
def test_api_endpoints_follow_the_role_rules(client, personas, route, method, callback):
    anonymous = _call(client, method, route)
    assert anonymous.status_code == 401, f"anonymous {method} {route}: {anonymous.status_code}"
    agent_style = _call(client, method, route, HTTP_AUTHORIZATION="Agent abc.def")
    assert agent_style.status_code in (401, 403)
    for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
        response = _call(client, method, route, HTTP_AUTHORIZATION=f"Bearer {personas[role]}")
        allowed = (
            (method in SAFE and route not in ADMIN_ONLY_READS)
            or role == Role.ADMIN
            or (method, route) in EVERYONE_WRITES
            or (role == Role.OPERATOR and (method, route) in OPERATOR_WRITES)
        )
        if allowed:
            assert response.status_code not in (401, 403), f"{role} {method} {route} refused: {response.content[:300]}"
            assert response.status_code < 500, f"{role} {method} {route}: {response.status_code}"
        else:
            assert response.status_code == 403, f"{role} {method} {route}: expected 403, got {response.status_code}"


@pytest.mark.parametrize("route,method,callback", SIGNED, ids=[f"{m.upper()} {r}" for r, m, _ in SIGNED])
def test_signature_authenticated_endpoints_refuse_users_and_anonymous_alike(client, personas, route, method, callback):
    assert _call(client, method, route).status_code == 403
    for role in (Role.VIEWER, Role.ADMIN):
        response = _call(client, method, route, HTTP_AUTHORIZATION=f"Bearer {personas[role]}")
        assert response.status_code == 403, f"a user token is not a signature on {route}"


@pytest.mark.parametrize("route,method,callback", AGENT, ids=[f"{m.upper()} {r}" for r, m, _ in AGENT])
def test_agent_endpoints_refuse_users_and_other_instances(client, personas, agents, route, method, callback):
    if route == "api/agent/register":
        response = client.post(_url(route), {}, content_type="application/json")
        assert response.status_code == 400  # open to agents with a token; no token, no instance
        return
    url = _url(route, agents["run_of_a"])
    assert getattr(client, method)(url).status_code == 401
    for role in (Role.VIEWER, Role.ADMIN):
        response = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Bearer {personas[role]}")
        assert response.status_code in (401, 403), f"user token accepted on {route}"
    if "ID" in route:
        body = {"status": "completed", "output": "pwned"}
        other = getattr(client, method)(
            url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Agent {agents['b']}"
        )
        assert other.status_code == 404, "instance B reached instance A's command run"
        own = getattr(client, method)(
            url,
            {"status": "running", "progress": 5},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Agent {agents['a']}",
        )
        assert own.status_code < 400 or own.status_code == 409


@pytest.mark.parametrize("route,method,callback", HTML, ids=[f"{m.upper()} {r}" for r, m, _ in HTML])
def test_html_pages_need_a_session_and_the_declared_role(
    client, personas, admin_user, operator_user, viewer_user, route, method, callback
):
    view_class = getattr(callback, "view_class", None)
    assert view_class is not None and issubclass(view_class, RoleRequiredMixin), f"{route} does not check roles"
    anonymous = _call(client, method, route)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"], f"anonymous reached {route}"
    declared = {
        "required_role": view_class.required_role,
        "write_role": view_class.write_role,
        **callback.view_initkwargs,
    }
    needed = declared["required_role"] if method in SAFE else declared["write_role"]
    if route in ADMIN_ONLY_PAGES:
        assert view_class.required_role == Role.ADMIN
    for user in (viewer_user, operator_user, admin_user):
        client.force_login(user)
        response = _call(client, method, route)
        if ROLE_RANK[user.role] >= ROLE_RANK[needed]:
            assert response.status_code != 403, f"{user.role} refused {method} {route}"
            assert response.status_code < 500
        else:
            assert response.status_code == 403, f"{user.role} {method} {route}: got {response.status_code}"
        client.logout()


HTML_POSTS = [(r, m, c) for r, m, c in HTML if m == "post"]


@pytest.mark.parametrize("route,method,callback", HTML_POSTS, ids=[f"POST {r}" for r, _, _ in HTML_POSTS])
def test_every_form_post_needs_a_csrf_token(personas, admin_user, route, method, callback):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    response = browser.post(_url(route), {})
    assert response.status_code == 403, f"POST {route} without a CSRF token answered {response.status_code}"
    assert b"CSRF" in response.content
