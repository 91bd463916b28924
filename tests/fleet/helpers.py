"""Builders for fleet tests: instances with state, agents with credentials, API clients for agents."""

from rest_framework.test import APIClient

from fleet import services
from fleet.models import Group, Instance

DEFAULT_STATE = {
    "os_version": "24.04.1",
    "apps": [
        {"name": "monitoring-agent", "version": "2.3.1", "running": True},
        {"name": "nginx", "version": "1.24.0", "running": False},
    ],
    "settings": {"ssh.password_auth": False, "firewall.enabled": True},
    "updates": [{"kind": "os", "name": "os", "version": "24.04.3", "released_at": "2026-11-01T00:00:00+00:00"}],
}


def make_group(name: str) -> Group:
    return Group.objects.get_or_create(name=name)[0]


def make_instance(name: str, *, groups=(), tags=(), state=None, status="online") -> Instance:
    """An instance as if registered and heartbeating: credential set, state reported."""
    state = state if state is not None else DEFAULT_STATE
    instance = Instance.objects.create(
        name=name,
        hostname=f"{name}.example",
        address="127.0.0.1:9",
        status=status,
        os_version=state.get("os_version", ""),
        apps=state.get("apps", []),
        settings=state.get("settings", {}),
        updates=state.get("updates", []),
    )
    instance.groups.set([make_group(g) if isinstance(g, str) else g for g in groups])
    instance.tags.set(services.tags_get_or_create(list(tags)))
    return instance


def agent_client(credential: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {credential}")
    return client


def register_agent(name: str, *, token: str | None = None, **extra) -> tuple[Instance, APIClient]:
    """Register through the real agent endpoint; returns the instance and a client holding its credential."""
    if token is None:
        _t, token = services.registration_token_create(actor=None, name=f"token for {name}")
    response = APIClient().post(
        "/api/agent/register", {"token": token, "name": name, "address": "127.0.0.1:9", **extra}, format="json"
    )
    assert response.status_code == 201, response.content
    return Instance.objects.get(pk=response.json()["instance_id"]), agent_client(response.json()["credential"])


def heartbeat_body(state=None, **changes) -> dict:
    body = {**(state or DEFAULT_STATE), "agent_version": "test-1"}
    body.update(changes)
    return body
