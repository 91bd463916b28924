"""Validation of a commit's files: pure logic, no Git, no database."""

import pytest

from gitops.repoformat import CommitInvalid, parse_commit, parse_value_text, validate_value

GROUPS, INSTANCES = {"web", "db"}, {"web-01"}


def parse(files):
    return parse_commit({k: v.encode() for k, v in files.items()}, groups=GROUPS, instances=INSTANCES).desired


def issues(files):
    with pytest.raises(CommitInvalid) as exc:
        parse(files)
    return [str(i) for i in exc.value.issues]


def test_every_level_maps_onto_the_same_keys():
    desired = parse(
        {
            "fleet.yaml": "settings:\n  ssh.password_auth: false\napps:\n  monitoring-agent: '1.4.2'\n",
            "groups/web.yaml": "settings:\n  nginx.workers: 4\n",
            "tags/env=production.yaml": "apps:\n  insecure-tool: absent\n",
            "instances/web-01.yaml": "settings:\n  motd: null\n",
            "README.md": "ignored",
            "docs/notes.txt": "ignored",
        }
    )
    assert desired == {
        ("fleet", "", "ssh.password_auth"): False,
        ("fleet", "", "app:monitoring-agent"): "1.4.2",
        ("group", "web", "nginx.workers"): 4,
        ("tag", "env=production", "app:insecure-tool"): "absent",
        ("instance", "web-01", "motd"): None,
    }


def test_an_empty_file_configures_nothing():
    assert parse({"fleet.yaml": ""}) == {}


def test_a_yaml_syntax_error_names_the_file_and_line():
    found = issues({"fleet.yaml": "settings:\n  a: 1\n  b: [1, 2\n"})
    assert len(found) == 1 and found[0].startswith("fleet.yaml, line ") and "YAML syntax error" in found[0]


def test_tabs_and_bad_indentation_are_syntax_errors_with_lines():
    found = issues({"groups/web.yaml": "settings:\n\ta: 1\n"})
    assert found[0].startswith("groups/web.yaml, line 2: YAML syntax error")


def test_schema_problems_are_all_reported_at_once():
    found = issues(
        {
            "fleet.yaml": "settings:\n  ok: 1\n  nested: {a: 1}\n  Bad Key!: 2\nextras: 1\n",
            "groups/web.yaml": "apps:\n  monitoring-agent: 1.4\n  Bad_App: '1.0'\n  other: 'not a version!'\n",
            "groups/nope.yaml": "settings: {}\n",
            "tags/notatag.yaml": "settings: {}\n",
            "instances/web-99.yaml": "settings: {}\n",
            "other.yaml": "settings: {}\n",
        }
    )
    assert "fleet.yaml, line 3: setting 'nested' must be a string, number, boolean or null" in found
    assert (
        "fleet.yaml, line 4: 'Bad Key!' is not a valid setting key (e.g. ssh.password_auth), or app:<name> for an app"
        in found
    )
    assert "fleet.yaml, line 5: unknown section 'extras': use settings and apps" in found
    assert (
        "groups/web.yaml, line 2: app 'monitoring-agent' must be a version string or 'absent' — quote it: \"1.4\""
        in found
    )
    assert "groups/web.yaml, line 3: 'Bad_App' is not a valid app name (lowercase, digits, . _ + -)" in found
    assert (
        "groups/web.yaml, line 4: app 'other': 'not a version!' is not a version such as 1.4.2 (or 'absent')" in found
    )
    assert "groups/nope.yaml, line 1: there is no group named 'nope' in the fleet" in found
    assert any(f.startswith("tags/notatag.yaml, line 1: the file name is not a tag") for f in found)
    assert "instances/web-99.yaml, line 1: there is no instance named 'web-99' in the fleet" in found
    assert any(f.startswith("other.yaml, line 1: unknown file at the top level") for f in found)


def test_a_duplicate_key_is_an_error_not_a_silent_override():
    found = issues({"fleet.yaml": "settings:\n  a: 1\n  a: 2\n"})
    assert found == ["fleet.yaml, line 3: 'a' appears twice under 'settings'"]


def test_the_same_target_twice_is_an_error():
    found = issues({"fleet.yaml": "", "fleet.yml": ""})
    assert found == ["fleet.yml, line 1: fleet.yaml already configures the same target"]


def test_a_file_that_is_not_a_mapping_is_an_error():
    assert issues({"fleet.yaml": "- a\n- b\n"}) == ["fleet.yaml, line 1: 'the file' must be a mapping of key: value"]


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("ssh.password_auth", False, True),
        ("ssh.port", 22, True),
        ("motd", None, True),
        ("motd", ["a"], False),
        ("app:monitoring-agent", "1.4.2", True),
        ("app:monitoring-agent", "absent", True),
        ("app:monitoring-agent", 1.4, False),
        ("app:Bad", "1.0", False),
        ("bad key", 1, False),
    ],
)
def test_panel_values_follow_the_same_rules_as_files(key, value, ok):
    if ok:
        assert validate_value(key, value) == (key, value)
    else:
        with pytest.raises(ValueError):
            validate_value(key, value)


def test_form_values_are_read_as_yaml_scalars():
    assert parse_value_text("false") is False
    assert parse_value_text("22") == 22
    assert parse_value_text('"22"') == "22"
    assert parse_value_text("") is None
    with pytest.raises(ValueError):
        parse_value_text("[1, 2]")
