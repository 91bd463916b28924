"""Syncs against a real sshd serving a real bare Git repository."""

import logging

import pytest

from common.models import AuditEntry, Notification
from fleet.choices import CommandSource, CommandType
from fleet.models import Command
from gitops import services
from gitops.choices import ConflictStatus, ConflictStrategy, Level, RepositoryStatus, SyncStatus
from gitops.models import Conflict, DesiredEntry, SyncRun

from .conftest import sync
from .sshd import free_port

pytestmark = pytest.mark.integration


def entry(level, target, key):
    return DesiredEntry.objects.filter(level=level, target=target, key=key).first()


def gitops_commands():
    return list(Command.objects.filter(source=CommandSource.GITOPS).order_by("id"))


def test_first_sync_fills_the_store_and_queues_commands_for_instances_that_differ(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False}, {"monitoring-agent": "1.4.2"})
    git_repo.write_config("groups/db.yaml", {"db.max_connections": 200})
    git_repo.write("README.md", "not configuration")
    sha = git_repo.commit("first")
    repo = connect()

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED, run.errors
    assert run.commit_sha == sha and repo.last_commit_sha == sha and repo.status == RepositoryStatus.OK
    assert entry(Level.FLEET, "", "ssh.password_auth").value is False
    assert entry(Level.FLEET, "", "ssh.password_auth").git_base is False
    assert entry(Level.GROUP, "db", "db.max_connections").value == 200
    kinds = {(c.kind, c.description.split(" @")[0]) for c in gitops_commands()}
    assert (CommandType.UPDATE_APP, "GitOps fleet-config") in kinds
    runs_by_instance = {
        r.instance.name: r.command.params
        for c in gitops_commands()
        for r in c.runs.all()
        if c.kind == CommandType.SET_CONFIG
    }
    assert runs_by_instance["db-01"] == {"values": {"db.max_connections": 200, "ssh.password_auth": False}, "unset": []}
    assert runs_by_instance["web-01"] == {"values": {"ssh.password_auth": False}, "unset": []}
    assert run.commands_issued == len(gitops_commands())
    assert {c["action"] for c in run.changes} == {"git_applied"}


def test_a_changed_file_is_applied_on_the_next_sync(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    repo = connect()
    sync(repo)
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "pool.ntp.org"})
    git_repo.write_config("instances/web-02.yaml", apps={"monitoring-agent": "absent"})
    sha2 = git_repo.commit("second")

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED and repo.last_commit_sha == sha2
    assert entry(Level.FLEET, "", "ntp.server").value == "pool.ntp.org"
    assert [c for c in run.changes if c["key"] == "app:monitoring-agent"][0]["after"] == "absent"
    uninstall = Command.objects.get(kind=CommandType.UNINSTALL_APP)
    assert [r.instance.name for r in uninstall.runs.all()] == ["web-02"]


def test_removing_a_key_from_git_removes_it_from_the_store(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "a"})
    git_repo.commit()
    repo = connect()
    sync(repo)
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED
    assert entry(Level.FLEET, "", "ntp.server") is None


def test_an_unchanged_commit_is_a_no_op_that_fetches_nothing(connect, git_repo, fleet, django_assert_max_num_queries):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    repo = connect()
    sync(repo)
    commands_before = Command.objects.count()

    with django_assert_max_num_queries(14):
        run = sync(repo)

    assert run.status == SyncStatus.NOOP
    assert Command.objects.count() == commands_before
    assert "nothing fetched" in run.log and "] fetched" not in run.log and run.changes == []


def test_malformed_yaml_applies_nothing_and_names_file_and_line(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    good = git_repo.commit()
    repo = connect()
    sync(repo)
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": True})  # a valid change in the same commit...
    git_repo.write("groups/web.yaml", "settings:\n  ssh.port: 22\n  bad: [unclosed\n")  # ...and a broken file
    commands_before = Command.objects.count()

    git_repo.commit("broken")
    run = sync(repo)

    assert run.status == SyncStatus.INVALID
    assert any(e.startswith("groups/web.yaml, line ") and "YAML syntax error" in e for e in run.errors), run.errors
    assert entry(Level.FLEET, "", "ssh.password_auth").value is False  # the last good state stays in force
    assert entry(Level.GROUP, "web", "ssh.port") is None
    assert repo.last_commit_sha == good and repo.status == RepositoryStatus.INVALID
    assert "groups/web.yaml" in repo.last_error
    assert Command.objects.count() == commands_before
    assert Notification.objects.filter(title__contains="is invalid").exists()


def test_schema_errors_report_every_problem_with_file_and_line(connect, git_repo, fleet):
    git_repo.write("fleet.yaml", "settings:\n  ssh.password_auth: false\napps:\n  monitoring-agent: 1.4\n")
    git_repo.write_config("groups/nosuchgroup.yaml", {"a": 1})
    git_repo.write_config("instances/ghost.yaml", {"a": 1})
    git_repo.commit()
    repo = connect()

    run = sync(repo)

    assert run.status == SyncStatus.INVALID
    assert (
        "fleet.yaml, line 4: app 'monitoring-agent' must be a version string or 'absent' — quote it: \"1.4\""
        in run.errors
    )
    assert "groups/nosuchgroup.yaml, line 1: there is no group named 'nosuchgroup' in the fleet" in run.errors
    assert "instances/ghost.yaml, line 1: there is no instance named 'ghost' in the fleet" in run.errors
    assert DesiredEntry.objects.count() == 0


def assert_one_quiet_line(caplog):
    """A refused connection is one WARNING of the sync, without a traceback; paramiko says nothing."""
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.exc_info) for r in loud] == [("gitops.sync", None)], [r.getMessage() for r in loud]
    assert not [r for r in caplog.records if r.name.startswith("paramiko") and r.levelno >= logging.ERROR]


def test_a_changed_host_key_is_refused_with_both_fingerprints(connect, git_repo, fleet, sshd, caplog):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    repo = connect()
    pinned = repo.host_key_fingerprint
    sshd.new_host_key()
    sshd.restart()
    caplog.clear()

    with caplog.at_level(logging.DEBUG):
        run = sync(repo)

    assert_one_quiet_line(caplog)

    from gitops.sshkeys import fingerprint, host_key_from_text

    presented = fingerprint(host_key_from_text(sshd.host_key_path.with_suffix(".pub").read_text()))
    assert run.status == SyncStatus.FAILED
    assert "host key" in run.errors[0] and pinned in run.errors[0] and presented in run.errors[0]
    assert DesiredEntry.objects.count() == 0
    assert repo.host_key_fingerprint == pinned


def test_a_private_key_the_server_does_not_accept_is_refused(
    sshd, git_repo, fleet, admin_user, settings_dir, enterprise_license, caplog
):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    repo = services.repository_connect(
        actor=admin_user,
        name="r",
        url=sshd.url(git_repo),
        known_hosts=sshd.host_key_path.with_suffix(".pub").read_text(),
    )  # its deploy key is never authorized
    caplog.clear()

    with caplog.at_level(logging.DEBUG):
        run = sync(repo)

    assert_one_quiet_line(caplog)
    assert run.status == SyncStatus.FAILED
    assert "refused the repository's SSH key" in run.errors[0]
    assert repo.status == RepositoryStatus.ERROR


def test_an_unreachable_host_fails_clearly_and_backs_off_exponentially(
    admin_user, settings_dir, enterprise_license, fleet
):
    from gitops.sshkeys import generate_keypair, load_private_key

    port = free_port()  # nothing listens there
    _priv, _pub = generate_keypair()
    host_key_line = "ssh-ed25519 " + load_private_key(_priv).get_base64()
    repo = services.repository_connect(
        actor=admin_user,
        name="gone",
        url=f"ssh://git@127.0.0.1:{port}/x.git",
        known_hosts=host_key_line,
        sync_interval=60,
    )

    first = sync(repo)
    delay1 = (repo.next_sync_at - repo.last_sync_at).total_seconds()
    second = sync(repo)
    delay2 = (repo.next_sync_at - repo.last_sync_at).total_seconds()

    assert first.status == second.status == SyncStatus.FAILED
    assert first.errors == [f"The panel could not reach 127.0.0.1:{port} over SSH."]
    assert repo.failure_count == 2 and repo.status == RepositoryStatus.ERROR
    assert delay1 == pytest.approx(60, abs=1) and delay2 == pytest.approx(120, abs=1)
    assert Notification.objects.filter(title="GitOps: cannot sync gone").count() == 1  # once, not every retry


def test_only_one_sync_of_a_repository_runs_at_a_time(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    repo = connect()
    from django.utils import timezone

    type(repo).objects.filter(pk=repo.pk).update(sync_started_at=timezone.now())  # another worker holds it

    assert services.repository_sync(repository_id=repo.pk) is None
    assert SyncRun.objects.count() == 0
    assert repo.pk not in services.repositories_due()


# --- Conflicts and drift ---------------------------------------------------------------------------


def _baseline(connect, git_repo, strategy):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "a"})
    git_repo.commit()
    repo = connect(strategy=strategy)
    assert sync(repo).status == SyncStatus.APPLIED
    return repo


def _panel_sets(admin_user, key, value):
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key=key, value=value)


def test_git_change_with_panel_unchanged_is_applied_under_every_strategy(connect, git_repo, fleet):
    repo = _baseline(connect, git_repo, ConflictStrategy.SERVER_WINS)
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "b"})
    git_repo.commit()

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED
    assert entry(Level.FLEET, "", "ntp.server").value == "b"


def test_server_wins_keeps_the_panel_value_in_a_true_conflict(connect, git_repo, fleet, admin_user):
    repo = _baseline(connect, git_repo, ConflictStrategy.SERVER_WINS)
    _panel_sets(admin_user, "ntp.server", "panel")
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "git"})
    git_repo.commit()

    run = sync(repo)

    e = entry(Level.FLEET, "", "ntp.server")
    assert run.status == SyncStatus.APPLIED
    assert e.value == "panel" and e.git_base == "git"
    assert [(c["action"], c["git"]) for c in run.changes] == [("git_overridden", "git")]
    assert not Conflict.objects.exists()


def test_git_wins_takes_the_git_value_in_a_true_conflict(connect, git_repo, fleet, admin_user):
    repo = _baseline(connect, git_repo, ConflictStrategy.GIT_WINS)
    _panel_sets(admin_user, "ntp.server", "panel")
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "git"})
    git_repo.commit()

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED
    assert entry(Level.FLEET, "", "ntp.server").value == "git"
    assert [c["action"] for c in run.changes] == ["conflict_git_taken"]


def test_drift_is_kept_by_server_wins_and_reverted_by_git_wins(connect, git_repo, fleet, admin_user):
    repo = _baseline(connect, git_repo, ConflictStrategy.SERVER_WINS)
    _panel_sets(admin_user, "ntp.server", "panel")
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": True, "ntp.server": "a"})  # ntp.server unchanged in Git
    git_repo.commit()

    run = sync(repo)
    assert run.status == SyncStatus.APPLIED
    assert entry(Level.FLEET, "", "ntp.server").value == "panel"  # drift kept
    assert "drift_kept" in run.log and not Conflict.objects.exists()

    services.repository_update(
        actor=admin_user, repository=repo, branch="main", sync_interval=60, conflict_strategy=ConflictStrategy.GIT_WINS
    )
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "a"})
    git_repo.commit()
    run = sync(repo)
    assert entry(Level.FLEET, "", "ntp.server").value == "a"  # drift reverted to Git
    assert {"key": "ntp.server", "action": "drift_reverted"}.items() <= [
        c for c in run.changes if c["key"] == "ntp.server"
    ][0].items()


def test_manual_pauses_on_a_true_conflict_applies_nothing_and_shows_base_panel_and_git(
    connect, git_repo, fleet, admin_user
):
    repo = _baseline(connect, git_repo, ConflictStrategy.MANUAL)
    _panel_sets(admin_user, "ntp.server", "panel")
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": True, "ntp.server": "git"})
    git_repo.commit()

    run = sync(repo)

    assert run.status == SyncStatus.PAUSED and repo.status == RepositoryStatus.PAUSED
    conflict = Conflict.objects.get()
    assert (conflict.key, conflict.level, conflict.base_value, conflict.panel_value, conflict.git_value) == (
        "ntp.server",
        Level.FLEET,
        "a",
        "panel",
        "git",
    )
    assert entry(Level.FLEET, "", "ssh.password_auth").value is False  # the non-conflicting change waits too
    assert sync(repo).status == SyncStatus.PAUSED  # and stays paused while the conflict is open


def test_manual_opens_a_conflict_for_a_panel_edit_of_a_git_key_at_the_next_sync(connect, git_repo, fleet, admin_user):
    repo = _baseline(connect, git_repo, ConflictStrategy.MANUAL)
    _panel_sets(admin_user, "ntp.server", "panel")

    run = sync(repo)  # the same commit: Git still says "a"

    assert run.status == SyncStatus.PAUSED
    conflict = Conflict.objects.get()
    assert (conflict.panel_value, conflict.git_value, conflict.base_value) == ("panel", "a", "a")
    assert [c["action"] for c in run.changes] == ["conflict"]


def test_a_panel_value_kept_by_an_admin_is_not_asked_about_again_until_git_changes_it(
    connect, git_repo, fleet, admin_user
):
    repo = _baseline(connect, git_repo, ConflictStrategy.MANUAL)
    _panel_sets(admin_user, "ntp.server", "panel")
    assert sync(repo).status == SyncStatus.PAUSED
    services.conflict_resolve(actor=admin_user, conflict=Conflict.objects.get(), resolution="panel")

    assert sync(repo).status == SyncStatus.APPLIED
    again = sync(repo)
    assert again.status == SyncStatus.NOOP and [c["action"] for c in again.changes] == ["override_kept"]
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "b"})
    git_repo.commit()
    assert sync(repo).status == SyncStatus.PAUSED  # Git moved on: ask again


def _paused(connect, git_repo, admin_user):
    repo = _baseline(connect, git_repo, ConflictStrategy.MANUAL)
    _panel_sets(admin_user, "ntp.server", "panel")
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": True, "ntp.server": "git"})
    git_repo.commit()
    assert sync(repo).status == SyncStatus.PAUSED
    return repo, Conflict.objects.get()


@pytest.mark.parametrize(
    ("strategy", "action", "kept"),
    [
        (ConflictStrategy.GIT_WINS, "conflict_git_taken", "git"),
        (ConflictStrategy.SERVER_WINS, "git_overridden", "panel"),
    ],
)
def test_leaving_manual_while_paused_lets_the_new_strategy_decide_the_open_conflicts(
    strategy, action, kept, connect, git_repo, fleet, admin_user, admin_api, queued_syncs
):
    repo, conflict = _paused(connect, git_repo, admin_user)
    refused = admin_api.post(f"/api/governance/gitops/{repo.pk}/sync")
    assert refused.status_code == 409 and "another conflict strategy" in refused.data["message"]

    response = admin_api.patch(f"/api/governance/gitops/{repo.pk}", {"conflict_strategy": strategy}, format="json")

    assert response.status_code == 200, response.data
    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.SUPERSEDED and conflict.resolved_by == admin_user
    assert conflict.outcome == f"closed when the strategy changed to {strategy} by alice"
    assert admin_api.get(f"/api/governance/gitops/{repo.pk}/conflicts").data == []  # the list: open ones only
    shown = admin_api.get(f"/api/governance/gitops/conflicts/{conflict.pk}").data
    assert (shown["status"], shown["outcome"]) == ("superseded", conflict.outcome)
    late = admin_api.post(
        f"/api/governance/gitops/conflicts/{conflict.pk}/resolve", {"resolution": "panel"}, format="json"
    )
    assert late.status_code == 409
    assert late.data["message"] == (
        f"This conflict was closed when the strategy changed to {strategy} by alice: that strategy decides the key now."
    )
    run = sync(repo)
    assert run.status == SyncStatus.APPLIED and repo.status == RepositoryStatus.OK
    assert [c["action"] for c in run.changes if c["key"] == "ntp.server"] == [action]
    assert entry(Level.FLEET, "", "ntp.server").value == kept
    audit = AuditEntry.objects.filter(action="gitops.repository.update").latest("id")
    assert audit.details["conflicts_closed"] == 1


def test_the_settings_page_says_how_many_conflicts_leaving_manual_closed(
    connect, git_repo, fleet, admin_user, admin_client, queued_syncs, django_capture_on_commit_callbacks
):
    repo, conflict = _paused(connect, git_repo, admin_user)
    form = {"branch": "main", "path": "", "revision": "", "sync_interval": 60, "conflict_strategy": "git_wins"}

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/governance/gitops/{repo.pk}/settings/", form, follow=True)

    assert "1 open conflict(s) closed" in response.content.decode()
    assert queued_syncs[-1] == (repo.pk, "strategy changed")
    page = admin_client.get("/governance/gitops/conflicts/").content.decode()
    assert "No open conflicts" in page
    assert "Superseded" in page and "Closed when the strategy changed to git_wins by alice" in page
    admin_list = admin_client.get("/admin/gitops/conflict/?status=superseded").content.decode()
    assert "closed when the strategy changed to git_wins by alice" in admin_list


def test_an_admins_decision_says_who_chose_what_and_the_conflict_is_listed_as_resolved(
    connect, git_repo, fleet, admin_user, admin_client, admin_api
):
    repo, conflict = _paused(connect, git_repo, admin_user)

    services.conflict_resolve(actor=admin_user, conflict=conflict, resolution="git")

    shown = admin_api.get(f"/api/governance/gitops/conflicts/{conflict.pk}").data
    assert (shown["status"], shown["resolution"], shown["outcome"]) == ("resolved", "git", "took the Git value (alice)")
    assert "Took the Git value (alice)" in admin_client.get("/governance/gitops/conflicts/").content.decode()


def test_other_settings_changes_leave_open_conflicts_open(connect, git_repo, fleet, admin_user):
    repo, conflict = _paused(connect, git_repo, admin_user)

    services.repository_update(actor=admin_user, repository=repo, sync_interval=120, conflict_strategy="manual")

    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.OPEN and sync(repo).status == SyncStatus.PAUSED


def test_resolving_the_last_conflict_through_the_api_resumes_the_sync(
    connect, git_repo, fleet, admin_user, admin_api, django_capture_on_commit_callbacks, queued_syncs
):
    repo, conflict = _paused(connect, git_repo, admin_user)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(
            f"/api/governance/gitops/conflicts/{conflict.pk}/resolve", {"resolution": "git"}, format="json"
        )

    assert response.status_code == 200, response.data
    assert response.data["status"] == ConflictStatus.RESOLVED and response.data["resolved_value"] == "git"
    assert queued_syncs == [(repo.pk, "conflicts resolved")]
    run = sync(repo)
    assert run.status == SyncStatus.APPLIED
    assert entry(Level.FLEET, "", "ntp.server").value == "git"
    assert entry(Level.FLEET, "", "ssh.password_auth").value is True
    audit = AuditEntry.objects.get(action="gitops.conflict.resolve")
    assert audit.actor == admin_user and audit.details["resolution"] == "git"


def test_keeping_the_panel_value_survives_the_resumed_sync(connect, git_repo, fleet, admin_user):
    repo, conflict = _paused(connect, git_repo, admin_user)

    services.conflict_resolve(actor=admin_user, conflict=conflict, resolution="panel")
    run = sync(repo)

    e = entry(Level.FLEET, "", "ntp.server")
    assert run.status == SyncStatus.APPLIED
    assert e.value == "panel" and e.git_base == "git"


def test_an_admin_resolves_a_conflict_in_the_django_admin_change_form(connect, git_repo, fleet, admin_user, client):
    repo, conflict = _paused(connect, git_repo, admin_user)
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)

    page = client.get(f"/admin/gitops/conflict/{conflict.pk}/change/")
    assert page.status_code == 200
    assert b"panel" in page.content and b"git" in page.content
    response = client.post(
        f"/admin/gitops/conflict/{conflict.pk}/change/", {"choice": "custom", "custom_value": "chosen.example"}
    )

    assert response.status_code == 302, response.content[:3000]
    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.RESOLVED and conflict.resolved_value == "chosen.example"
    assert entry(Level.FLEET, "", "ntp.server").value == "chosen.example"
    assert AuditEntry.objects.filter(action="gitops.conflict.resolve", actor=admin_user).exists()
    assert sync(repo).status == SyncStatus.APPLIED


def test_a_custom_value_the_store_refuses_is_an_error_of_the_admin_form_and_resolves_nothing(
    connect, git_repo, fleet, admin_user, client
):
    repo, conflict = _paused(connect, git_repo, admin_user)
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)

    response = client.post(
        f"/admin/gitops/conflict/{conflict.pk}/change/", {"choice": "custom", "custom_value": "x" * 5000}
    )

    assert response.status_code == 200  # the form again, with the field's error
    assert "is longer than 4096 characters" in response.content.decode()
    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.OPEN


def test_the_django_admin_cannot_delete_repositories_or_entries_around_the_services(
    connect, git_repo, fleet, admin_user, client
):
    repo = _baseline(connect, git_repo, ConflictStrategy.MANUAL)
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    entry_pk = DesiredEntry.objects.get(key="ntp.server").pk

    assert client.get(f"/admin/gitops/repository/{repo.pk}/delete/").status_code == 403
    assert client.get(f"/admin/gitops/desiredentry/{entry_pk}/delete/").status_code == 403
    for model, pk in (("repository", repo.pk), ("desiredentry", entry_pk)):
        client.post(f"/admin/gitops/{model}/", {"action": "delete_selected", "_selected_action": [pk], "post": "yes"})
    assert type(repo).objects.filter(pk=repo.pk).exists() and DesiredEntry.objects.filter(pk=entry_pk).exists()


def test_an_admin_resolves_conflicts_with_an_admin_action(connect, git_repo, fleet, admin_user, client):
    repo, conflict = _paused(connect, git_repo, admin_user)
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)

    response = client.post("/admin/gitops/conflict/", {"action": "take_git_value", "_selected_action": [conflict.pk]})

    assert response.status_code == 302
    conflict.refresh_from_db()
    assert conflict.status == ConflictStatus.RESOLVED and conflict.resolution == "git"


def test_the_beat_task_queues_only_due_repositories(connect, git_repo, fleet, monkeypatch):
    from django.utils import timezone

    from gitops import tasks

    repo = connect()
    other = connect(name="later")
    type(other).objects.filter(pk=other.pk).update(next_sync_at=timezone.now() + timezone.timedelta(hours=1))
    queued = []
    monkeypatch.setattr(tasks.sync_repository, "delay", lambda pk, trigger: queued.append(pk))

    assert tasks.sync_due_repositories() == 1
    assert queued == [repo.pk]


def test_the_sync_task_records_a_run(connect, git_repo, fleet):
    from gitops import tasks

    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    repo = connect()

    assert tasks.sync_repository(repo.pk, "test") == SyncStatus.APPLIED
    assert SyncRun.objects.filter(repository=repo, trigger="test").count() == 1


def test_a_forced_sync_revalidates_an_invalid_head_once_the_missing_group_exists(connect, git_repo, fleet):
    from fleet.models import Group

    git_repo.write_config("groups/cache.yaml", {"cache.size": 512})
    sha = git_repo.commit()
    repo = connect()
    assert sync(repo).status == SyncStatus.INVALID
    assert sync(repo) is None  # the schedule does not re-read, nor record again, the same invalid head
    assert SyncRun.objects.filter(status=SyncStatus.INVALID).count() == 1
    Group.objects.create(name="cache")

    run = sync(repo, trigger="manual:alice")

    assert run.status == SyncStatus.APPLIED and repo.last_commit_sha == sha
    assert entry(Level.GROUP, "cache", "cache.size").value == 512


def test_conflicts_closed_before_outcomes_were_recorded_are_worded_by_the_migration(db, admin_user):
    from importlib import import_module

    from django.apps import apps

    from gitops.models import Repository

    repo = Repository.objects.create(name="r", url="git@h:x", private_key_encrypted="-", public_key="-")
    closed = {"status": ConflictStatus.RESOLVED, "resolved_by": admin_user}
    by_strategy = Conflict.objects.create(repository=repo, level=Level.FLEET, key="a", **closed)
    decided = Conflict.objects.create(repository=repo, level=Level.FLEET, key="b", resolution="panel", **closed)
    still_open = Conflict.objects.create(repository=repo, level=Level.FLEET, key="c")

    import_module("gitops.migrations.0004_conflict_superseded_outcome").word_past_outcomes(apps, None)

    rows = Conflict.objects.filter(pk__in=[by_strategy.pk, decided.pk, still_open.pk]).order_by("key")
    assert [(c.status, c.outcome) for c in rows] == [
        ("superseded", "closed when the strategy changed away from manual by alice"),
        ("resolved", "kept the panel value (alice)"),
        ("open", ""),
    ]
