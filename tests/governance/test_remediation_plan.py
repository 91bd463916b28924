"""Enforce mode's pure logic with plain data: violation → command, window, budget, backoff, breaker."""

from datetime import UTC, datetime, time, timedelta

from governance.remediation.plan import Fix, Window, backoff_delay, breaker_trips, budget_left, fix_for

STATE = {
    "os_version": "24.04.1",
    "apps": [
        {"name": "nginx", "version": "1.24.0", "running": False},
        {"name": "outdated-db", "version": "1.4", "running": True},
        {"name": "outdated-cache", "version": "2.0", "running": True},
    ],
    "settings": {"ssh.password_auth": True, "firewall.enabled": "true"},
    "updates": [
        {"kind": "os", "name": "os", "version": "24.04.3"},
        {"kind": "os", "name": "os", "version": "24.04.2"},
        {"kind": "app", "name": "nginx", "version": "1.26.2"},
    ],
}


def test_a_missing_required_app_is_installed_at_its_minimum_version():
    rules = {"apps": [{"name": "monitoring-agent", "min_version": "2.4.0", "running": False}]}
    assert fix_for("required_apps", rules, "app:monitoring-agent", STATE) == Fix(
        "install_app", {"app": "monitoring-agent", "version": "2.4.0"}
    )


def test_a_required_app_without_minimum_is_installed_without_a_version():
    rules = {"apps": [{"name": "log-collector", "min_version": None}]}
    assert fix_for("required_apps", rules, "app:log-collector", STATE) == Fix("install_app", {"app": "log-collector"})


def test_an_old_required_app_is_updated_and_a_stopped_one_started():
    old = {"apps": [{"name": "nginx", "min_version": "1.26.0", "running": True}]}
    assert fix_for("required_apps", old, "app:nginx", STATE) == Fix("update_app", {"app": "nginx", "version": "1.26.0"})
    stopped = {"apps": [{"name": "nginx", "min_version": None, "running": True}]}
    assert fix_for("required_apps", stopped, "app:nginx", STATE) == Fix("start_app", {"app": "nginx"})


def test_a_required_app_that_now_complies_gets_no_second_command():
    rules = {"apps": [{"name": "nginx", "min_version": "1.20", "running": False}]}
    assert fix_for("required_apps", rules, "app:nginx", STATE) is None


def test_a_blocked_glob_uninstalls_one_matching_app_at_a_time_alphabetically():
    rules = {"apps": [{"pattern": "outdated-*", "min_version": None, "below_version": None}]}
    assert fix_for("blocked_apps", rules, "blocked:outdated-*", STATE) == Fix(
        "uninstall_app", {"app": "outdated-cache"}
    )
    ranged = {"apps": [{"pattern": "outdated-*", "min_version": None, "below_version": "2.0"}]}
    assert fix_for("blocked_apps", ranged, "blocked:outdated-*", STATE) == Fix("uninstall_app", {"app": "outdated-db"})


def test_overdue_updates_go_to_the_newest_offered_version():
    rules = {"os_deadline_hours": 48, "apps": [{"name": "nginx", "deadline_hours": 24}]}
    assert fix_for("update_rules", rules, "update:os", STATE) == Fix("update_os", {"version": "24.04.3"})
    assert fix_for("update_rules", rules, "update:app:nginx", STATE) == Fix(
        "update_app", {"app": "nginx", "version": "1.26.2"}
    )
    assert fix_for("update_rules", rules, "update:app:redis", STATE) is None  # nothing offered


def test_baseline_drift_sets_the_setting_and_os_drift_queues_the_os_update():
    rules = {"os_version": "24.04.3", "os_match": "exact", "settings": {"ssh.password_auth": False}}
    assert fix_for("baseline", rules, "os_version", STATE) == Fix("update_os", {"version": "24.04.3"})
    assert fix_for("baseline", rules, "setting:ssh.password_auth", STATE) == Fix(
        "set_config", {"values": {"ssh.password_auth": False}, "unset": []}
    )
    same = {"settings": {"firewall.enabled": True}}
    assert fix_for("baseline", same, "setting:firewall.enabled", STATE) is None  # "true" == True already


def test_a_rule_key_the_policy_no_longer_has_gets_no_fix():
    assert fix_for("required_apps", {"apps": []}, "app:nginx", STATE) is None
    assert fix_for("baseline", {"settings": {}}, "setting:x", STATE) is None


def at(text, tz=UTC):
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def test_a_window_on_weeknights_across_midnight_in_its_own_time_zone():
    # Monday to Friday 22:00–04:00 in Berlin (UTC+1 in December).
    window = Window(days=(0, 1, 2, 3, 4), start=time(22), end=time(4), timezone="Europe/Berlin")
    assert window.is_open(at("2026-12-07 21:30"))  # Monday 22:30 Berlin
    assert window.is_open(at("2026-12-08 02:00"))  # Tuesday 03:00 Berlin, Monday's window
    assert not window.is_open(at("2026-12-07 20:00"))  # Monday 21:00 Berlin
    assert window.is_open(at("2026-12-12 01:00"))  # Saturday 02:00 Berlin: Friday night's window
    assert not window.is_open(at("2026-12-12 22:00"))  # Saturday 23:00 Berlin
    assert window.next_open(at("2026-12-12 22:00")) == at("2026-12-14 21:00")  # Monday 22:00 Berlin


def test_a_window_without_hours_is_open_all_day_on_its_days():
    window = Window(days=(5, 6))
    assert window.is_open(at("2026-12-05 12:00")) and not window.is_open(at("2026-12-07 12:00"))
    assert window.next_open(at("2026-12-07 12:00")) == at("2026-12-12 00:00")
    assert Window().is_open(at("2026-12-07 12:00"))


def test_the_budget_is_the_tightest_limit_set():
    common = {"scope_size": 40, "in_flight": 2, "started_last_hour": 7}
    assert budget_left(**common, max_instances=5, max_percent=None, max_per_hour=None) == 3
    assert budget_left(**common, max_instances=None, max_percent=10, max_per_hour=None) == 2
    assert budget_left(**common, max_instances=5, max_percent=None, max_per_hour=8) == 1
    assert budget_left(**common, max_instances=2, max_percent=None, max_per_hour=None) == 0
    assert (
        budget_left(
            scope_size=5, in_flight=0, started_last_hour=0, max_instances=None, max_percent=10, max_per_hour=None
        )
        == 1
    )


def test_backoff_doubles_per_attempt_up_to_a_cap():
    assert [backoff_delay(n, 60).total_seconds() for n in (1, 2, 3)] == [60, 120, 240]
    assert backoff_delay(30, 3600) == timedelta(days=1)


def test_the_breaker_needs_both_enough_attempts_and_a_failure_rate_over_the_threshold():
    assert breaker_trips(failed=3, finished=5, threshold_percent=50, min_finished=3)
    assert not breaker_trips(failed=2, finished=4, threshold_percent=50, min_finished=3)  # exactly 50 %
    assert not breaker_trips(failed=2, finished=2, threshold_percent=50, min_finished=3)  # too few
