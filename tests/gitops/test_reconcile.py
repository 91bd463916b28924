"""The three-way merge, precedence and command planning: pure logic."""

from fleet.choices import CommandType
from gitops.choices import ConflictStrategy as S
from gitops.reconcile import DECISIONS, EntryIndex, StoreState, merge, plan_commands

K = ("fleet", "", "ntp.server")


def store(value="a", base="a", present=True, in_git=True):
    return {K: StoreState(present=present, value=value, in_git=in_git, git_base=base)}


def test_nothing_changed_means_nothing_to_do():
    result = merge(store(), {K: "a"}, S.MANUAL)
    assert not result.writes and not result.changes and not result.conflicts


def test_git_changed_and_panel_unchanged_applies_git():
    result = merge(store(), {K: "b"}, S.SERVER_WINS)
    assert result.writes[K] == StoreState(True, "b", True, "b")


def test_git_removing_a_key_the_panel_did_not_touch_deletes_it():
    result = merge(store(), {}, S.MANUAL)
    assert result.writes[K] is None


def test_panel_drift_is_kept_by_server_wins_reverted_by_git_wins_and_a_conflict_under_manual():
    result = merge(store(value="panel"), {K: "a"}, S.SERVER_WINS)
    assert not result.writes and [c["action"] for c in result.drift] == ["drift_kept"] and not result.conflicts
    result = merge(store(value="panel"), {K: "a"}, S.GIT_WINS)
    assert result.writes[K] == StoreState(True, "a", True, "a")
    assert [c["action"] for c in result.changes] == ["drift_reverted"]
    result = merge(store(value="panel"), {K: "a"}, S.MANUAL)
    assert not result.writes and result.conflicts[0]["panel_value"] == "panel"


def test_a_panel_value_an_admin_kept_stays_under_manual_until_git_changes_the_key():
    kept = store(value="panel")
    kept[K].accepted = True
    result = merge(kept, {K: "a"}, S.MANUAL)
    assert not result.conflicts and [c["action"] for c in result.changes] == ["override_kept"]
    assert merge(kept, {K: "b"}, S.MANUAL).conflicts


def test_server_wins_records_git_changes_to_a_panel_edited_key_as_overridden():
    result = merge(store(value="panel"), {K: "b"}, S.SERVER_WINS)
    assert result.writes[K] == StoreState(True, "panel", True, "b")
    assert result.changes[0] | {} == {**result.changes[0], "action": "git_overridden", "git": "b", "effect": "kept"}


def test_a_panel_deletion_of_a_git_key_is_drift_too():
    result = merge(store(value=None, present=False), {K: "a"}, S.GIT_WINS)
    assert result.writes[K] == StoreState(True, "a", True, "a")


def test_both_changed_to_the_same_value_converges_without_conflict():
    result = merge(store(value="b"), {K: "b"}, S.MANUAL)
    assert not result.conflicts and result.writes[K] == StoreState(True, "b", True, "b")


def test_a_true_conflict_follows_the_strategy():
    assert merge(store(value="p"), {K: "g"}, S.SERVER_WINS).writes[K] == StoreState(True, "p", True, "g")
    assert merge(store(value="p"), {K: "g"}, S.GIT_WINS).writes[K] == StoreState(True, "g", True, "g")
    manual = merge(store(value="p"), {K: "g"}, S.MANUAL)
    assert not manual.writes
    assert manual.conflicts == [
        {
            "key": K,
            "base_present": True,
            "base_value": "a",
            "panel_present": True,
            "panel_value": "p",
            "git_present": True,
            "git_value": "g",
        }
    ]


def test_a_key_both_added_with_different_values_is_a_conflict():
    result = merge(store(value="p", base=None, in_git=False), {K: "g"}, S.MANUAL)
    assert result.conflicts[0]["base_present"] is False


def test_keys_git_never_had_belong_to_the_panel():
    result = merge(store(value="p", base=None, in_git=False), {}, S.GIT_WINS)
    assert not result.writes and not result.drift


def test_true_is_not_the_same_value_as_one():
    result = merge(store(value=True, base=True), {K: 1}, S.MANUAL)
    assert result.writes[K].value == 1


def test_precedence_is_instance_over_tag_over_group_over_fleet():
    index = EntryIndex(
        [
            ("fleet", "", "k", "fleet"),
            ("fleet", "", "only_fleet", 1),
            ("group", "web", "k", "group"),
            ("group", "web", "g", "web"),
            ("group", "aaa", "g", "aaa"),
            ("tag", "env=prod", "k", "tag"),
            ("instance", "web-01", "k", "instance"),
        ]
    )
    eff = index.effective(name="web-01", groups=["web", "aaa"], tags={"env=prod"})
    assert eff["k"] == ("instance", "instance web-01")
    assert eff["only_fleet"] == (1, "fleet")
    assert eff["g"] == ("aaa", "group aaa")  # among groups, the name sorting first wins
    assert index.effective(name="web-02", groups=["web"], tags={"env=prod"})["k"] == ("tag", "tag env=prod")
    assert index.effective(name="web-03", groups=["web"], tags=set())["k"] == ("group", "group web")
    assert index.effective(name="db-01", groups=[], tags=set())["k"] == ("fleet", "fleet")


def test_commands_move_reported_state_to_the_desired_one():
    state = {
        "settings": {"ssh.password_auth": True, "motd": "hi", "ssh.port": 22},
        "apps": [
            {"name": "monitoring-agent", "version": "1.4.0"},
            {"name": "insecure-tool", "version": "2"},
            {"name": "ok", "version": "1"},
        ],
    }
    desired = {
        "ssh.password_auth": False,
        "motd": None,
        "ssh.port": 22,
        "gone": None,
        "app:monitoring-agent": "1.4.2",
        "app:insecure-tool": "absent",
        "app:log-collector": "2.0",
        "app:ok": "1",
        "app:never-installed": "absent",
    }
    assert plan_commands(desired, state) == [
        (CommandType.SET_CONFIG, {"values": {"ssh.password_auth": False}, "unset": ["motd"]}),
        (CommandType.UNINSTALL_APP, {"app": "insecure-tool"}),
        (CommandType.INSTALL_APP, {"app": "log-collector", "version": "2.0"}),
        (CommandType.UPDATE_APP, {"app": "monitoring-agent", "version": "1.4.2"}),
    ]


def test_an_instance_already_in_the_desired_state_needs_no_command():
    assert plan_commands({"a": 1, "app:x": "1"}, {"settings": {"a": 1}, "apps": [{"name": "x", "version": "1"}]}) == []


def test_every_decision_the_merge_records_has_words_for_the_run_page():
    accepted = store(value="panel")
    accepted[K].accepted = True
    cases = [
        (store(), {K: "b"}, S.MANUAL),  # git_applied
        (store(value="b"), {K: "b"}, S.MANUAL),  # converged
        (store(value="panel"), {K: "a"}, S.GIT_WINS),  # drift_reverted
        (store(value="panel"), {K: "b"}, S.GIT_WINS),  # conflict_git_taken
        (store(value="panel"), {K: "a"}, S.SERVER_WINS),  # drift_kept
        (store(value="panel"), {K: "b"}, S.SERVER_WINS),  # git_overridden
        (accepted, {K: "a"}, S.MANUAL),  # override_kept
        (store(value="panel"), {K: "b"}, S.MANUAL),  # conflict
    ]
    recorded = [merge(st, git, strategy).changes[0]["action"] for st, git, strategy in cases]
    assert sorted(recorded) == sorted(DECISIONS)  # each case its own decision, each with its words
