"""Pure logic: versions, rule validation, each evaluator's edges, conflicts and release tracking."""

from datetime import UTC, datetime, timedelta

import pytest

from common.versions import Version, compare
from governance import evaluators
from governance.evaluators import RuleError, evaluate, validate_rules

NOW = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)


def state(apps=(), os_version="24.04", settings=None, updates=()):
    return {
        "os_version": os_version,
        "apps": [{"name": a[0], "version": a[1], "running": a[2] if len(a) > 2 else True} for a in apps],
        "settings": settings or {},
        "updates": list(updates),
    }


@pytest.mark.parametrize(
    ("newer", "older"),
    [("1.10", "1.9"), ("24.04.2", "24.04"), ("2.0", "2.0-rc1"), ("2.0.1", "2.0"), ("v3", "2.99"), ("10.0", "9.12.1")],
)
def test_versions_compare_as_versions_not_text(newer, older):
    assert compare(newer, older) == 1
    assert compare(older, newer) == -1
    assert Version(older) < Version(newer)


def test_trailing_zero_parts_do_not_make_a_version_newer():
    assert Version("24.04") == Version("24.04.0")
    assert compare("1.0", "1") == 0


def test_required_app_missing_is_reported_by_name():
    rules = validate_rules("required_apps", {"apps": [{"name": "monitoring-agent"}]})
    [failure] = evaluate("required_apps", rules, state(apps=[("nginx", "1.0")]), NOW)
    assert failure.evidence == "monitoring-agent missing"
    assert failure.rule_key == "app:monitoring-agent"


def test_required_app_below_minimum_version_uses_version_order():
    rules = validate_rules("required_apps", {"apps": [{"name": "agent", "min_version": "1.10"}]})
    assert evaluate("required_apps", rules, state(apps=[("agent", "1.10.0")]), NOW) == []
    [failure] = evaluate("required_apps", rules, state(apps=[("agent", "1.9")]), NOW)
    assert failure.evidence == "agent 1.9 installed, 1.10 or newer required"


def test_required_app_that_must_run_fails_when_stopped():
    rules = validate_rules("required_apps", {"apps": [{"name": "agent", "running": True}]})
    [failure] = evaluate("required_apps", rules, state(apps=[("agent", "2.0", False)]), NOW)
    assert "not running" in failure.evidence
    assert evaluate("required_apps", rules, state(apps=[("agent", "2.0", True)]), NOW) == []


def test_blocked_app_below_a_version_reads_like_the_spec():
    rules = validate_rules("blocked_apps", {"apps": [{"pattern": "outdated-db", "below_version": "2.0"}]})
    [failure] = evaluate("blocked_apps", rules, state(apps=[("outdated-db", "1.4")]), NOW)
    assert failure.evidence == "outdated-db 1.4 installed, blocked below 2.0"
    assert evaluate("blocked_apps", rules, state(apps=[("outdated-db", "2.0")]), NOW) == []
    assert evaluate("blocked_apps", rules, state(apps=[("outdated-db", "10.1")]), NOW) == []


def test_blocked_glob_matches_every_app_it_covers_and_nothing_else():
    rules = validate_rules("blocked_apps", {"apps": [{"pattern": "insecure-*"}]})
    [failure] = evaluate(
        "blocked_apps",
        rules,
        state(apps=[("insecure-tool", "1.0"), ("insecure-ftp", "0.3"), ("secure-tool", "1")]),
        NOW,
    )
    assert failure.evidence == "insecure-ftp 0.3, insecure-tool 1.0 installed, blocked"
    assert evaluate("blocked_apps", rules, state(apps=[("my-insecure-tool", "1.0")]), NOW) == []


def test_blocked_version_range_includes_its_lower_bound_and_excludes_its_upper_bound():
    rules = validate_rules("blocked_apps", {"apps": [{"pattern": "db", "min_version": "1.2", "below_version": "1.5"}]})
    assert evaluate("blocked_apps", rules, state(apps=[("db", "1.1")]), NOW) == []
    assert len(evaluate("blocked_apps", rules, state(apps=[("db", "1.2")]), NOW)) == 1
    assert len(evaluate("blocked_apps", rules, state(apps=[("db", "1.4.9")]), NOW)) == 1
    assert evaluate("blocked_apps", rules, state(apps=[("db", "1.5")]), NOW) == []


def os_update(version, released):
    return {"kind": "os", "name": "os", "version": version, "released_at": released.isoformat()}


def test_os_update_past_its_deadline_reads_like_the_spec():
    rules = validate_rules("update_rules", {"os_deadline_hours": 48})
    released = NOW - timedelta(hours=61)
    [failure] = evaluate(
        "update_rules", rules, state(os_version="24.04.1", updates=[os_update("24.04.2", released)]), NOW
    )
    assert failure.evidence == f"OS 24.04.2 available since {released:%Y-%m-%d %H:%M} UTC, 61 h > 48 h"
    assert failure.rule_key == "update:os"


def test_update_within_the_deadline_or_already_installed_passes():
    rules = validate_rules("update_rules", {"os_deadline_hours": 48})
    recent = [os_update("24.04.2", NOW - timedelta(hours=47))]
    assert evaluate("update_rules", rules, state(os_version="24.04.1", updates=recent), NOW) == []
    old = [os_update("24.04.2", NOW - timedelta(hours=100))]
    assert evaluate("update_rules", rules, state(os_version="24.04.2", updates=old), NOW) == []


def test_a_newer_release_does_not_reset_the_deadline_clock():
    rules = validate_rules("update_rules", {"os_deadline_hours": 48})
    first = NOW - timedelta(hours=60)
    # Both offered: the clock runs from the oldest.
    both = [os_update("24.04.2", first), os_update("24.04.3", NOW - timedelta(hours=1))]
    [failure] = evaluate("update_rules", rules, state(os_version="24.04.1", updates=both), NOW)
    assert "60 h > 48 h" in failure.evidence and "24.04.3" in failure.evidence
    # The agent now reports only the newer one; the recorded pending release keeps the clock.
    newer_only = [os_update("24.04.3", NOW - timedelta(hours=1))]
    assert evaluate("update_rules", rules, state(os_version="24.04.1", updates=newer_only), NOW) == []
    [failure] = evaluate(
        "update_rules", rules, state(os_version="24.04.1", updates=newer_only), NOW, pending_since={"os": first}
    )
    assert "60 h > 48 h" in failure.evidence


def test_app_update_rules_ignore_apps_that_are_not_installed():
    rules = validate_rules("update_rules", {"apps": [{"name": "nginx", "deadline_hours": 24}]})
    update = {"kind": "app", "name": "nginx", "version": "1.27", "released_at": (NOW - timedelta(hours=30)).isoformat()}
    [failure] = evaluate("update_rules", rules, state(apps=[("nginx", "1.26")], updates=[update]), NOW)
    assert failure.rule_key == "update:app:nginx"
    assert evaluate("update_rules", rules, state(apps=[], updates=[update]), NOW) == []


def test_baseline_exact_os_version_fails_on_a_newer_os_but_minimum_passes():
    exact = validate_rules("baseline", {"os_version": "24.04", "os_match": "exact"})
    minimum = validate_rules("baseline", {"os_version": "24.04", "os_match": "minimum"})
    assert evaluate("baseline", exact, state(os_version="24.04.0"), NOW) == []
    [failure] = evaluate("baseline", exact, state(os_version="24.04.2"), NOW)
    assert failure.evidence == "OS 24.04.2 installed, exactly 24.04 required"
    assert evaluate("baseline", minimum, state(os_version="24.04.2"), NOW) == []
    [failure] = evaluate("baseline", minimum, state(os_version="22.04"), NOW)
    assert failure.evidence == "OS 22.04 installed, 24.04 or newer required"


def test_baseline_settings_report_the_actual_and_expected_value():
    rules = validate_rules("baseline", {"settings": {"ssh.password_auth": False, "firewall": "on"}})
    failures = evaluate("baseline", rules, state(settings={"ssh.password_auth": True}), NOW)
    assert {f.evidence for f in failures} == {
        "ssh.password_auth is true, expected false",
        'firewall not set, expected "on"',
    }
    assert evaluate("baseline", rules, state(settings={"ssh.password_auth": "false", "firewall": "on"}), NOW) == []


@pytest.mark.parametrize(
    ("policy_type", "rules", "message"),
    [
        ("required_apps", {"apps": []}, "at least one required app"),
        ("required_apps", {"apps": [{"name": "Bad Name"}]}, "not an app name"),
        ("required_apps", {"apps": [{"name": "a", "min_version": "not a version!"}]}, "not a version"),
        (
            "blocked_apps",
            {"apps": [{"pattern": "db", "min_version": "2.0", "below_version": "1.0"}]},
            "range from 2.0 below 1.0 is empty",
        ),
        ("update_rules", {}, "OS updates, for at least one app"),
        ("update_rules", {"os_deadline_hours": 0}, "between 1 and"),
        ("baseline", {"os_version": "24.04", "os_match": "roughly"}, "exact' or 'minimum"),
        ("baseline", {"settings": {"k": [1, 2]}}, "string, a finite number or a boolean"),
        ("nonsense", {}, "Unknown policy type"),
    ],
)
def test_bad_rules_are_refused_with_a_message_saying_what_is_wrong(policy_type, rules, message):
    with pytest.raises(RuleError, match=message):
        validate_rules(policy_type, rules)


def test_required_app_conflicts_with_a_block_of_every_version_but_not_with_a_block_of_old_ones():
    required = {"apps": [{"name": "telnetd", "min_version": None}]}
    assert evaluators.conflicting_apps(required, {"apps": [{"pattern": "telnet*"}]}) == [("telnetd", "telnet*")]
    assert evaluators.conflicting_apps(required, {"apps": [{"pattern": "telnetd", "below_version": "2.0"}]}) == []
    needs_new = {"apps": [{"name": "db", "min_version": "3.0"}]}
    assert evaluators.conflicting_apps(needs_new, {"apps": [{"pattern": "db", "min_version": "2.0"}]}) == [("db", "db")]
    assert evaluators.conflicting_apps(needs_new, {"apps": [{"pattern": "db", "min_version": "4.0"}]}) == []


def test_release_tracking_keeps_a_superseded_release_pending_and_closes_it_once_applied():
    released = NOW - timedelta(hours=10)
    records = [{"id": 1, "kind": "os", "name": "os", "version": "24.04.2", "released_at": released}]
    newer_only = state(os_version="24.04.1", updates=[os_update("24.04.3", NOW)])
    new, close = evaluators.release_transitions(newer_only, records)
    assert [r["version"] for r in new] == ["24.04.3"]
    assert close == {}
    new, close = evaluators.release_transitions(state(os_version="24.04.3"), records)
    assert close == {1: "applied"}
    new, close = evaluators.release_transitions(state(os_version="24.04.1"), records)
    assert close == {1: "withdrawn"}
