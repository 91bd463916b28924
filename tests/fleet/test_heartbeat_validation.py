"""Hostile and malformed heartbeats: refused at the edge with every problem by path, nothing stored, and
never fast-laned. What is stored is what governance can evaluate."""

import json

import pytest
from django.core.cache import cache

from fleet import services
from fleet.models import Instance
from fleet.state import MAX_APPS, MAX_PROBLEMS, validate_heartbeat
from tests.base import assert_status

from .helpers import DEFAULT_STATE, heartbeat_body, register_agent

UPDATE = {"kind": "app", "name": "nginx", "version": "1.26.2", "released_at": "2026-11-20T08:00:00+00:00"}


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()


@pytest.fixture
def agent(db):
    """A registered agent that has reported DEFAULT_STATE once."""
    instance, client = register_agent("web-01")
    assert_status(client.post("/api/agent/heartbeat", heartbeat_body(), format="json"), 200)
    instance.refresh_from_db()
    return instance, client


def beat(client, **changes):
    return client.post("/api/agent/heartbeat", heartbeat_body(**changes), format="json")


def raw_beat(client, text: str):
    return client.generic("POST", "/api/agent/heartbeat", text, content_type="application/json")


def assert_refused_and_unchanged(response, instance, paths):
    """400 naming exactly `paths`, and the stored state and body digest as they were."""
    assert_status(response, 400)
    body = response.json()
    assert body["error"] == "invalid"
    assert sorted(body["errors"]) == sorted(paths), body
    stored = Instance.objects.get(pk=instance.pk)
    assert (stored.state, stored.state_hash, stored.heartbeat_digest) == (
        instance.state,
        instance.state_hash,
        instance.heartbeat_digest,
    )


# --- values governance could not evaluate -------------------------------------------------------


@pytest.mark.parametrize(
    "released_at",
    [
        "0001-01-01T00:00:00+14:00",  # year 1 overflows on the way to UTC: it stopped the whole fleet's evaluation
        "2026-01-01T00:00:00-17:00",
        "1999-12-31T23:59:59+00:00",
        "2000-01-01T00:30:00+01:00",  # 1999 in UTC
        "9999-12-31T23:00:00-14:00",  # year 10000 in UTC
        "yesterday",
        "",
        None,
        1767225600,
        ["2026-11-20"],
    ],
)
def test_an_update_released_outside_the_years_2000_to_9999_or_not_a_time_is_refused(agent, released_at):
    instance, client = agent
    response = beat(client, updates=[{**UPDATE, "released_at": released_at}])
    assert_refused_and_unchanged(response, instance, ["updates[0].released_at"])


@pytest.mark.parametrize("where", ["apps", "updates"])
@pytest.mark.parametrize("name", [["nginx"], {"n": 1}, 7, True, None, ""])
def test_a_name_that_is_not_text_is_refused(agent, where, name):
    instance, client = agent
    item = {"name": name, "version": "1.0"} if where == "apps" else {**UPDATE, "name": name}
    response = beat(client, **{where: [item]})
    assert_refused_and_unchanged(response, instance, [f"{where}[0].name"])


@pytest.mark.parametrize("version", [None, "", "banana", ["1.0"], 1.5, "1.0 beta", "9" * 65])
def test_an_app_needs_a_version_that_parses(agent, version):
    instance, client = agent
    app = {"name": "nginx"} if version is None else {"name": "nginx", "version": version}
    response = beat(client, apps=[app])
    assert_refused_and_unchanged(response, instance, ["apps[0].version"])


def test_an_app_name_is_at_most_100_characters_as_the_schema_says(agent, admin_api):
    instance, client = agent
    declared = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    assert declared["HeartbeatAppRequest"]["properties"]["name"]["maxLength"] == 100
    for length in (101, 10_000):
        response = beat(client, apps=[{"name": "a" * length, "version": "1.0"}])
        assert_refused_and_unchanged(response, instance, ["apps[0].name"])
        assert f"this has {length}" in response.json()["message"]
    assert_status(beat(client, apps=[{"name": "a" * 100, "version": "1.0"}]), 200)


def test_control_characters_in_names_are_refused(agent):
    instance, client = agent
    response = beat(client, apps=[{"name": "nginx\n<b>", "version": "1.0"}])
    assert_refused_and_unchanged(response, instance, ["apps[0].name"])


def test_an_app_reported_twice_is_refused_naming_both(agent):
    instance, client = agent
    apps = [{"name": "nginx", "version": "1.0"}, {"name": "nginx", "version": "1.1"}]
    response = beat(client, apps=apps)
    assert_refused_and_unchanged(response, instance, ["apps[1].name"])
    assert "also apps[0]" in response.json()["message"]


@pytest.mark.parametrize(
    ("reported", "path"),
    [
        ({"ssh.port": {"nested": 22}}, "settings.ssh.port"),
        ({"ssh.port": [22]}, "settings.ssh.port"),
        ({"ssh.port": None}, "settings.ssh.port"),
        ({"ssh.port": 2**63}, "settings.ssh.port"),
        ({"ssh.port": -1e19}, "settings.ssh.port"),
        ({"motd": "x" * 4097}, "settings.motd"),
        ({"bad\tkey": 1}, "settings.bad\tkey"),
        ({"k" * 129: 1}, "settings." + "k" * 129),
        ({"": 1}, "settings"),
        (["ssh.port"], "settings"),
    ],
)
def test_settings_hold_storable_text_finite_numbers_and_booleans_only(agent, reported, path):
    instance, client = agent
    assert_refused_and_unchanged(beat(client, settings=reported), instance, [path])


def test_every_kind_of_setting_value_an_agent_reports_is_stored_as_sent(agent):
    instance, client = agent
    settings = {
        "ssh.port": 22,
        "ssh.password_auth": False,
        "load.max": 0.75,
        "motd": "Welcome\nto web-01",
        "n": -(2**63),
    }
    assert_status(beat(client, settings=settings), 200)
    assert Instance.objects.get(pk=instance.pk).settings == settings


def test_every_problem_is_reported_at_once_by_its_path_in_the_one_envelope(agent):
    instance, client = agent
    apps = [{"name": f"app-{i}", "version": "1.0"} for i in range(3)] + [{"name": "app-3", "version": "banana"}]
    response = beat(
        client,
        apps=apps,
        updates=[{**UPDATE, "released_at": "0001-01-01T00:00:00+14:00"}],
        settings={"ssh.port": {"x": 1}},
        os_version=24,
    )
    assert_refused_and_unchanged(
        response, instance, ["apps[3].version", "updates[0].released_at", "settings.ssh.port", "os_version"]
    )
    assert response.json()["message"].startswith("4 problems:")


def test_thousands_of_problems_are_listed_up_to_a_limit_and_counted(agent):
    instance, client = agent
    response = beat(client, apps=[{"name": f"app-{i}", "version": "x"} for i in range(500)])
    assert_status(response, 400)
    errors = response.json()["errors"]
    assert len(errors) == MAX_PROBLEMS + 1
    assert errors["non_field_errors"] == [f"{500 - MAX_PROBLEMS} more problems are not listed."]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"os_version": "banana"}, "os_version"),
        ({"os_version": "2" * 65}, "os_version"),
        ({"agent_version": "x" * 33}, "agent_version"),
        ({"agent_version": ["1"]}, "agent_version"),
        ({"apps": [{"name": "nginx", "version": "1.0", "running": "yes"}]}, "apps[0].running"),
        ({"apps": ["nginx"]}, "apps[0]"),
        ({"updates": [{**UPDATE, "kind": "kernel"}]}, "updates[0].kind"),
        ({"updates": [UPDATE, UPDATE]}, "updates[1]"),
        ({"updates": {"nginx": "1.0"}}, "updates"),
    ],
)
def test_other_malformed_fields_are_refused_with_their_path(agent, changes, path):
    instance, client = agent
    assert_refused_and_unchanged(beat(client, **changes), instance, [path])


@pytest.mark.parametrize("field", ["agent_version", "os_version"])
@pytest.mark.parametrize("wrong", [5, 1.5, True, ["1.0"], {"v": "1.0"}, "1" * 10_000], ids=repr)
def test_a_wrongly_typed_or_oversized_optional_version_is_refused_on_its_field(agent, field, wrong):
    instance, client = agent
    response = beat(client, **{field: wrong})
    assert_refused_and_unchanged(response, instance, [field])
    assert response.json()["message"].startswith(f"{field}: ")
    assert Instance.objects.get(pk=instance.pk).agent_version == instance.agent_version


@pytest.mark.parametrize("field", ["apps", "settings", "updates"])
@pytest.mark.parametrize("wrong", [5, "x" * 10_000, True])
def test_a_wrongly_typed_optional_list_or_object_is_refused_on_its_field(agent, field, wrong):
    instance, client = agent
    assert_refused_and_unchanged(beat(client, **{field: wrong}), instance, [field])


@pytest.mark.parametrize("field", ["agent_version", "os_version", "apps", "settings", "updates"])
def test_an_optional_field_left_out_or_null_is_accepted(agent, field):
    _instance, client = agent
    body = heartbeat_body()
    body.pop(field, None)
    assert_status(client.post("/api/agent/heartbeat", body, format="json"), 200)
    assert_status(client.post("/api/agent/heartbeat", {**body, field: None}, format="json"), 200)


# --- hostile JSON on the agent endpoints (common.api.parsers, before any view) --------------------

HOSTILE = {
    "nul in os_version": ('{"os_version": "24.04\\u0000"}', "os_version"),
    "nul in an app name": ('{"apps": [{"name": "ngi\\u0000nx", "version": "1"}]}', "apps[0].name"),
    "nul in a setting key": ('{"settings": {"ssh\\u0000port": 22}}', "settings"),
    "nul in a setting value": ('{"settings": {"motd": "hi\\u0000"}}', "settings.motd"),
    "nul in an update name": ('{"updates": [{"name": "\\u0000"}]}', "updates[0].name"),
    "nul in agent_version": ('{"agent_version": "1\\u0000"}', "agent_version"),
    "lone surrogate": ('{"apps": [{"name": "\\ud800", "version": "1"}]}', "apps[0].name"),
    "1e400 in settings": ('{"settings": {"ssh.port": 1e400}}', "non_field_errors"),
    "NaN in settings": ('{"settings": {"ssh.port": NaN}}', "non_field_errors"),
    "nested 10,000 deep": ('{"settings": ' + "[" * 10_000 + "]" * 10_000 + "}", "non_field_errors"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_json_in_a_heartbeat_is_refused_with_its_path(agent, case):
    instance, client = agent
    text, path = HOSTILE[case]
    response = raw_beat(client, text)
    assert_status(response, 400)
    assert response.json()["error"] == "parse_error"
    assert list(response.json()["errors"]) == [path]
    assert Instance.objects.get(pk=instance.pk).state == instance.state


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_json_is_refused_anonymously_on_registration(client, db, case):
    text, _path = HOSTILE[case]
    body = text[:-1] + ', "token": "reg_x_y", "name": "web-02"}'
    response = client.generic("POST", "/api/agent/register", body, content_type="application/json")
    assert_status(response, 400)
    assert response.json()["error"] == "parse_error"
    assert not Instance.objects.filter(name="web-02").exists()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"os_version": "banana"}, "os_version"),
        ({"hostname": ["web"]}, "hostname"),
        ({"hostname": "h" * 256}, "hostname"),
        ({"name": "web 02"}, "name"),
    ],
)
def test_registration_refuses_malformed_fields_by_path(client, db, body, path):
    _token, plaintext = services.registration_token_create(actor=None, name="t")
    response = client.post(
        "/api/agent/register", {"token": plaintext, "name": "web-02", **body}, content_type="application/json"
    )
    assert_status(response, 400)
    assert list(response.json()["errors"]) == [path]
    assert not Instance.objects.exists()


def test_hostile_json_in_a_run_report_is_refused(agent):
    _instance, client = agent
    for text in ('{"status": "failed", "error": "\\u0000"}', '{"progress": 1e400}', "[" * 5000 + "]" * 5000):
        response = client.generic("POST", "/api/agent/commands/1/result", text, content_type="application/json")
        assert_status(response, 400)
        assert response.json()["error"] == "parse_error"


# --- what is stored, and the fast lane -----------------------------------------------------------


def test_release_times_are_stored_in_utc_and_a_time_without_offset_counts_as_utc(agent):
    instance, client = agent
    updates = [
        {**UPDATE, "released_at": "2026-11-20T10:00:00+02:00"},
        {**UPDATE, "name": "redis", "released_at": "2026-11-20T08:00:00"},
    ]
    assert_status(beat(client, updates=updates), 200)
    stored = {u["name"]: u["released_at"] for u in Instance.objects.get(pk=instance.pk).updates}
    assert stored == {"nginx": "2026-11-20T08:00:00+00:00", "redis": "2026-11-20T08:00:00+00:00"}


def test_keys_the_panel_does_not_know_are_ignored_so_newer_agents_keep_reporting(agent):
    instance, client = agent
    apps = [{"name": "nginx", "version": "1.26.2", "running": True, "arch": "amd64"}]
    assert_status(beat(client, apps=apps, uptime_seconds=12), 200)
    assert Instance.objects.get(pk=instance.pk).apps == [{"name": "nginx", "version": "1.26.2", "running": True}]


def test_an_invalid_body_is_never_answered_by_the_fast_lane(agent):
    instance, client = agent
    text = json.dumps(heartbeat_body(apps=[{"name": "nginx"}]))
    for _ in range(2):  # the second, byte-identical one is refused too: only a stored body is fast-laned
        assert_refused_and_unchanged(raw_beat(client, text), instance, ["apps[0].version"])
    assert_status(raw_beat(client, json.dumps(heartbeat_body())), 200)


def test_a_heartbeat_with_the_maximum_number_of_apps_is_stored_and_one_more_is_refused(agent):
    instance, client = agent
    apps = [{"name": f"pkg-{i:05d}", "version": "1.0.0-1"} for i in range(MAX_APPS)]
    response = beat(client, apps=apps + [{"name": "one-more", "version": "1"}])
    assert_refused_and_unchanged(response, instance, ["apps"])
    assert_status(beat(client, apps=apps), 200)
    assert len(Instance.objects.get(pk=instance.pk).apps) == MAX_APPS


def test_validation_normalises_the_state_it_accepts():
    state, errors = validate_heartbeat({**DEFAULT_STATE, "apps": list(reversed(DEFAULT_STATE["apps"]))})
    assert errors == {}
    assert [a["name"] for a in state["apps"]] == ["monitoring-agent", "nginx"]
    assert validate_heartbeat({}) == (
        {"os_version": "", "apps": [], "settings": {}, "updates": [], "agent_version": ""},
        {},
    )
    assert validate_heartbeat([]) == ({}, {"non_field_errors": ["Send the state as a JSON object."]})


def test_a_body_over_the_upload_limit_is_refused_as_too_large_in_the_envelope(agent, settings):
    instance, client = agent
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 20_000
    apps = [{"name": f"pkg-{i:05d}", "version": "1.0.0-1"} for i in range(1_000)]
    response = raw_beat(client, json.dumps(heartbeat_body(apps=apps)))
    assert_status(response, 413)
    assert response.json()["error"] == "too_large"
    assert "20,000 bytes" in response.json()["message"]
    assert Instance.objects.get(pk=instance.pk).state == instance.state


def test_the_upgrade_forgets_bodies_accepted_under_the_old_rules(agent):
    from importlib import import_module

    from django.apps import apps

    instance, client = agent
    old_body = json.dumps(heartbeat_body(apps=[{"name": "nginx"}]))  # no version: accepted before
    Instance.objects.filter(pk=instance.pk).update(heartbeat_digest=services.heartbeat_digest(old_body.encode()))
    import_module("fleet.migrations.0003_revalidate_heartbeats").forget_heartbeat_digests(apps, None)
    assert_status(raw_beat(client, old_body), 400)  # not fast-laned: validated, and refused


def test_the_service_itself_refuses_a_state_governance_could_not_evaluate(agent):
    # Every caller (the view, the simulator's tests, a management command) gets the same check.
    from common.exceptions import ApplicationError

    instance, _client = agent
    poisoned = {**DEFAULT_STATE, "updates": [{**UPDATE, "released_at": "0001-01-01T00:00:00+14:00"}]}
    with pytest.raises(ApplicationError) as refused:
        services.heartbeat_record(instance=instance, state=poisoned)
    assert list(refused.value.errors) == ["updates[0].released_at"]
    assert Instance.objects.get(pk=instance.pk).updates == instance.updates


def test_a_change_elsewhere_leaves_the_apps_column_unwritten_and_a_change_to_them_writes_it(agent):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    instance, client = agent
    with CaptureQueriesContext(connection) as queries:
        assert_status(beat(client, settings={"ssh.password_auth": True}), 200)
    update = next(
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE") and "state_hash" in q["sql"]
    )
    assert '"settings"' in update and '"apps"' not in update
    apps = [{"name": "nginx", "version": "1.27.0", "running": True}]
    assert_status(beat(client, settings={"ssh.password_auth": True}, apps=apps), 200)
    stored = Instance.objects.get(pk=instance.pk)
    assert (stored.apps, stored.settings) == (apps, {"ssh.password_auth": True})
