"""The edge every request passes: hostile JSON refused with a 400 naming the path, one error envelope,
and the shared validators (text, timestamps, versions, branch names, addresses)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.exceptions import ValidationError
from rest_framework import serializers

from common.api.exceptions import flatten_errors
from common.api.fields import BoundedDateTimeField, FiniteFloatField, GitRefField, TextField, VersionField
from common.api.parsers import MAX_DEPTH
from common.exceptions import ApplicationError, ErrorCollector
from common.net import OutboundRefused, parse_address, resolve_outbound
from common.validators import git_ref_problem, validate_datetime_range
from tests.base import assert_status

HOSTILE_BODIES = {
    "deep": ("[" * 10_000 + "]" * 10_000, "non_field_errors"),
    "just_too_deep": ('{"username": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}", "username" + "[0]" * (MAX_DEPTH - 1)),
    "huge_number": ('{"username": 1e400}', "non_field_errors"),
    "nan": ('{"username": NaN}', "non_field_errors"),
    "nul": ('{"username": "ab\\u0000c", "password": "long-enough-pw-42"}', "username"),
    "surrogate": ('{"username": "\\ud800", "password": "long-enough-pw-42"}', "username"),
    "nul_key": ('{"user\\u0000name": "x"}', "non_field_errors"),
    "not_utf8": (b'{"username": "\xff"}', "non_field_errors"),
}


@pytest.mark.parametrize("case", HOSTILE_BODIES)
def test_hostile_json_is_refused_with_the_path_and_nothing_is_created(admin_api, case):
    body, path = HOSTILE_BODIES[case]
    from common.models import User

    before = User.objects.count()
    response = admin_api.generic("POST", "/api/users", body, content_type="application/json")
    assert_status(response, 400)
    envelope = response.json()
    assert set(envelope) >= {"error", "message", "errors"}
    assert list(envelope["errors"]) == [path], envelope
    assert User.objects.count() == before


def test_hostile_json_is_refused_anonymously_on_agent_registration(client):
    response = client.generic(
        "POST", "/api/agent/register", "[" * 10_000 + "]" * 10_000, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_a_valid_pair_of_surrogates_is_an_ordinary_character(admin_api):
    response = admin_api.generic(
        "POST", "/api/users", '{"username": "smile\\ud83d\\ude00", "password": "x"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "username" not in response.json()["errors"]  # only the weak password is wrong


def test_validation_errors_name_every_field_at_once(admin_api):
    response = admin_api.post("/api/users", {"username": "", "password": "", "role": "emperor"}, format="json")
    assert_status(response, 400)
    body = response.json()
    assert set(body["errors"]) == {"username", "password", "role"}
    assert body["message"].startswith("3 problems:")


def test_errors_that_are_not_about_input_have_the_same_envelope(admin_api, viewer_api):
    for response, code in (
        (admin_api.get("/api/users/999999"), "not_found"),
        (viewer_api.get("/api/users"), "permission_denied"),
        (admin_api.get("/api/no-such-endpoint"), "not_found"),
    ):
        assert response.json() == {"error": code, "message": response.json()["message"], "errors": {}}


@pytest.mark.parametrize(
    ("url", "formats"),
    [
        ("/api/fleet/instances?format=x", "api, json"),
        ("/api/fleet/instances?format=%00", "api, json"),
        ("/api/governance/violations/export?format=xml", "csv, json"),
    ],
)
def test_a_format_the_endpoint_cannot_answer_in_is_a_400_on_format_not_a_404(admin_api, url, formats):
    response = admin_api.get(url)
    assert_status(response, 400)
    assert response.json()["errors"] == {"format": [f"Must be one of: {formats}."]}


@pytest.mark.parametrize("method", ["TRACE", "PUT", "POST", "DELETE"])
@pytest.mark.parametrize("url", ["/api/governance/policies/export?format=x", "/api/fleet/instances?format=csv"])
def test_a_method_the_endpoint_does_not_serve_is_a_405_whatever_format_is_asked(admin_api, client, method, url):
    """DRF's negotiation answered these 404 before looking at the method (schemathesis: TRACE gave 404)."""
    response = admin_api.generic(method, url)
    assert_status(response, 405)
    assert response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD, OPTIONS"
    assert client.generic(method, url).json()["error"] == "not_authenticated"  # credentials first, as ever


@pytest.mark.parametrize("method", ["TRACE", "PATCH", "PUT", "DELETE"])
def test_pages_answer_a_method_they_do_not_serve_with_405(admin_client, method):
    for url in ("/servers/", "/governance/policies/", "/settings/audit/"):
        response = admin_client.generic(method, url)
        assert response.status_code == 405, (method, url)
        assert "GET" in response["Allow"]


def test_nested_drf_errors_flatten_to_request_paths():
    detail = {
        "canary": {"instances": ["x"]},
        "rules": {"apps": [{}, {"min_version": ["y"]}]},
        "non_field_errors": ["z"],
    }
    assert flatten_errors(detail) == {
        "canary.instances": ["x"],
        "rules.apps[1].min_version": ["y"],
        "non_field_errors": ["z"],
    }


def test_an_error_collector_reports_all_problems_in_one_application_error():
    problems = ErrorCollector()
    problems.add("rules.apps[0].name", "Name the app.")
    problems.merge({"min_version": ["'banana' is not a version."]}, prefix="rules.apps[1]")
    with pytest.raises(ApplicationError) as err:
        problems.raise_if_any()
    assert err.value.as_body() == {
        "error": "invalid",
        "message": "2 problems: rules.apps[0].name: Name the app.; rules.apps[1].min_version: 'banana' is not a version.",
        "errors": {
            "rules.apps[0].name": ["Name the app."],
            "rules.apps[1].min_version": ["'banana' is not a version."],
        },
    }


class _Probe(serializers.Serializer):
    text = TextField(max_length=10, required=False)
    at = BoundedDateTimeField(required=False)
    number = FiniteFloatField(required=False)
    version = VersionField(required=False)
    branch = GitRefField(required=False)


@pytest.mark.parametrize(
    "data,field",
    [
        ({"text": "a\x00b"}, "text"),
        ({"text": "\ud800"}, "text"),
        ({"text": "x" * 11}, "text"),
        ({"text": ["list"]}, "text"),
        ({"at": "0001-01-01T00:00:00+14:00"}, "at"),
        ({"at": "9999-12-31T23:00:00-14:00"}, "at"),
        ({"at": "2026-01-01T00:00:00-17:00"}, "at"),
        ({"at": "1999-12-31T23:59:59Z"}, "at"),
        ({"number": float("inf")}, "number"),
        ({"version": "banana"}, "version"),
        ({"version": ""}, "version"),
        ({"branch": "x.lock"}, "branch"),
        ({"branch": "a@{1}"}, "branch"),
        ({"branch": "feature/"}, "branch"),
        ({"branch": "a:b"}, "branch"),
    ],
)
def test_shared_fields_refuse_what_cannot_be_stored_or_meant(data, field):
    serializer = _Probe(data=data)
    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]


def test_shared_fields_accept_ordinary_values():
    serializer = _Probe(
        data={
            "text": "héllo",
            "at": "2026-03-01T10:00:00+14:00",
            "number": 1.5,
            "version": "2:1.8.0-1ubuntu1~22.04",
            "branch": "release/2026.12",
        }
    )
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["at"] == datetime(2026, 2, 28, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["main", "feature/x", "v1.2", "a-b_c", "release/2026.12"])
def test_branch_names_git_accepts_pass(name):
    assert git_ref_problem(name) is None


def test_the_datetime_range_is_checked_before_conversion():
    with pytest.raises(ValidationError):
        validate_datetime_range(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))
    validate_datetime_range(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-14))))


@pytest.mark.parametrize(
    "address",
    ["user:pw@127.0.0.1:58990/internal?x=", "http://host", "host:70000", "host:0", "::1", "a..b", "h/x", "web 01", ""],
)
def test_instance_addresses_are_host_and_port_only(address):
    with pytest.raises(ValidationError):
        parse_address(address)


def test_instance_addresses_parse_to_host_and_port():
    assert parse_address("Web-01.example.com:8080") == ("web-01.example.com", 8080)
    assert parse_address("[2001:db8::1]:443") == ("2001:db8::1", 443)
    assert parse_address("10.0.0.1") == ("10.0.0.1", None)


@pytest.mark.parametrize("host", ["169.254.169.254", "metadata.google.internal", "[fe80::1]".strip("[]"), "0.0.0.0"])
def test_outbound_connections_to_metadata_and_link_local_are_refused_before_connecting(host, monkeypatch):
    import socket

    def no_connect(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    with pytest.raises(OutboundRefused):
        resolve_outbound(host, 80)


def test_loopback_is_refused_in_production_settings(settings):
    settings.OUTBOUND_DENY_NETWORKS = [*settings.OUTBOUND_DENY_NETWORKS, "127.0.0.0/8", "::1/128"]
    with pytest.raises(OutboundRefused):
        resolve_outbound("127.0.0.1", 6379)
    with pytest.raises(OutboundRefused):
        resolve_outbound("::ffff:127.0.0.1", 6379)


def test_the_refusal_does_not_tell_an_unknown_host_from_a_denied_one():
    with pytest.raises(OutboundRefused) as unknown:
        resolve_outbound("no-such-host.invalid", 22)
    assert unknown.value.message == "The panel could not reach no-such-host.invalid:22."


@pytest.mark.parametrize("bad", ["²", "١٢", "99999999999999999999", "-1", "0", " 7x"])
@pytest.mark.parametrize(
    "url",
    [
        "/operations/new/?instance={v}",
        "/operations/new/?group={v}",
        "/governance/?group={v}",
        "/governance/exceptions/new/?instance={v}",
        "/governance/gitops/conflicts/?repository={v}",
        "/governance/gitops/config/?edit={v}",
        "/api/governance/gitops/desired-config/effective?instance={v}",
        "/servers/?group={v}",
    ],
)
def test_an_id_in_a_query_string_that_int_cannot_read_or_the_database_cannot_hold_is_never_a_500(
    admin_client, enterprise_license, url, bad
):
    from urllib.parse import quote

    assert admin_client.get(url.format(v="1")).status_code in (200, 400, 404)  # the page itself is there
    response = admin_client.get(url.format(v=quote(bad)))
    assert response.status_code < 500, (url, bad, response.status_code)


def test_parse_id_takes_only_ascii_digits_within_64_bits():
    from common.validators import parse_id

    assert parse_id("42") == 42 and parse_id(" 42 ") == 42
    assert [parse_id(v) for v in ("²", "١٢", "0", "-3", "9" * 19, "2e3", "", None)] == [None] * 8
    assert parse_id(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    "url",
    [
        "/api/fleet/instances",
        "/api/governance/policies/export",
        "/api/governance/policies/export?format=yaml",
        "/api/governance/policies/export?format=zip",  # export's own parameter, not a renderer: was a 400
        "/api/governance/violations/export?format=csv",
    ],
)
def test_options_describes_the_endpoint_whatever_its_own_parameters_say(admin_api, url):
    response = admin_api.options(url)
    assert_status(response, 200)
    assert response["Content-Type"] == "application/json"
    assert response.json()["name"] and "GET" in response["Allow"]
