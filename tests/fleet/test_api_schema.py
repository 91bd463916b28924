"""The fleet endpoints return what their OpenAPI schema declares: nullable where a value can be null
(a token or command made by the system, a refused registration attempt), paginated only where the list
is paginated. Checked on real responses of a fleet that has such values."""

import pytest
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from fleet import services
from fleet.choices import CommandType, ScopeKind
from fleet.models import TokenUse
from fleet.scopes import Scope
from tests.base import assert_status

from .helpers import agent_client, heartbeat_body, make_instance, register_agent

TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


@pytest.fixture(scope="module")
def openapi():
    return SchemaGenerator().get_schema(request=None, public=True)


def mismatches(value, schema, components, path="$") -> list[str]:
    """Where `value` does not match an OpenAPI 3.0 schema (the parts DRF and drf-spectacular emit)."""
    if "$ref" in schema:
        return mismatches(value, components[schema["$ref"].rsplit("/", 1)[1]], components, path)
    if value is None:
        return [] if schema.get("nullable") else [f"{path} is null but not declared nullable"]
    for key in ("allOf", "oneOf", "anyOf"):
        if key in schema:
            options = [mismatches(value, option, components, path) for option in schema[key]]
            if key == "allOf":
                return [m for found in options for m in found]
            return [] if any(not found for found in options) else options[0]
    if "enum" in schema and value not in schema["enum"] and not (value == "" and "" in schema["enum"]):
        return [f"{path}: {value!r} not in {schema['enum']}"]
    expected = TYPES.get(schema.get("type"))
    if expected and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
        return [f"{path}: {type(value).__name__} where {schema['type']} is declared"]
    problems = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        problems += [f"{path}.{k} is required but missing" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in properties:
                problems += mismatches(item, properties[key], components, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += mismatches(item, schema["additionalProperties"], components, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += mismatches(item, schema["items"], components, f"{path}[{index}]")
    return problems


@pytest.fixture
def fleet_with_nulls(db, admin_user):
    """A fleet with every value that can be null: system-made token and command, a refused attempt."""
    cache.clear()
    token, plaintext = services.registration_token_create(actor=None, name="made by the system")
    web, client = register_agent("web-01", token=plaintext)
    assert_status(client.post("/api/agent/heartbeat", heartbeat_body(), format="json"), 200)
    APIClient().post("/api/agent/register", {"token": plaintext, "name": "web-01"}, format="json")  # refused: taken
    assert TokenUse.objects.filter(instance=None).exists()
    make_instance("never-seen", status="pending")
    scope = Scope(kind=ScopeKind.INSTANCES, instance_ids=(web.pk,))
    command = services.command_create(actor=None, kind=CommandType.RESTART_APP, params={"app": "nginx"}, scope=scope)
    services.command_create(actor=admin_user, kind=CommandType.RESTART_APP, params={"app": "nginx"}, scope=scope)
    return {"token": token, "instance": web, "command": command, "run": command.runs.get(), "agent": client}


def operation_schema(openapi, path, method="get", status="200"):
    return openapi["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("/api/fleet/instances", None),
        ("/api/fleet/instances/{id}", "instance"),
        ("/api/fleet/groups", None),
        ("/api/fleet/tags", None),
        ("/api/fleet/registration-tokens", None),
        ("/api/fleet/registration-tokens/{id}", "token"),
        ("/api/fleet/commands", None),
        ("/api/fleet/commands/{id}", "command"),
        ("/api/fleet/command-runs", None),
        ("/api/fleet/command-runs/{id}", "run"),
        ("/api/fleet/summary", None),
        ("/api/fleet/health", None),
        ("/api/license", None),
        ("/api/audit", None),
    ],
)
def test_each_fleet_read_returns_what_its_schema_declares(openapi, admin_api, fleet_with_nulls, template, key):
    url = template.replace("{id}", str(fleet_with_nulls[key].pk)) if key else template
    response = admin_api.get(url)
    assert_status(response, 200)
    schema = operation_schema(openapi, template)
    body = response.json()
    assert mismatches(body, schema, openapi["components"]["schemas"]) == []
    declared_paginated = schema["$ref"].rsplit("/", 1)[1].startswith("Paginated")
    assert declared_paginated == (isinstance(body, dict) and set(body) >= {"count", "results"})


def test_null_values_are_really_returned_where_declared_nullable(admin_api, fleet_with_nulls):
    token = admin_api.get(f"/api/fleet/registration-tokens/{fleet_with_nulls['token'].pk}").json()
    assert token["created_by"] is None
    assert None in [use["instance"] for use in token["uses"]]
    assert admin_api.get(f"/api/fleet/commands/{fleet_with_nulls['command'].pk}").json()["created_by"] is None


def test_the_agent_endpoints_return_what_their_schema_declares(openapi, fleet_with_nulls):
    client = fleet_with_nulls["agent"]
    components = openapi["components"]["schemas"]
    commands = client.get("/api/agent/commands").json()
    assert commands["commands"]
    assert mismatches(commands, operation_schema(openapi, "/api/agent/commands"), components) == []
    beat = client.post("/api/agent/heartbeat", heartbeat_body(), format="json").json()
    assert mismatches(beat, operation_schema(openapi, "/api/agent/heartbeat", "post"), components) == []
    run_id = commands["commands"][0]["run_id"]
    report = client.post(f"/api/agent/commands/{run_id}/result", {"status": "completed"}, format="json").json()
    schema = operation_schema(openapi, "/api/agent/commands/{run_id}/result", "post")
    assert mismatches(report, schema, components) == []
    assert agent_client("x.y").get("/api/agent/commands").status_code == 401


def test_every_operation_documents_the_http_servers_414(openapi):
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            # gunicorn answers an over-long URL itself, in HTML: documented without a JSON body.
            assert "content" not in responses["414"], (method, path)
