"""Conflict strategies hold on every sync, also when the branch head has not moved (real sshd and git)."""

import pytest

from fleet.choices import CommandSource, CommandType
from fleet.models import Command
from gitops import tasks
from gitops.choices import ConflictStrategy, Level, SyncStatus
from gitops.models import DesiredEntry, SyncRun

from .conftest import sync

pytestmark = pytest.mark.integration
API = "/api/governance/gitops"


def _git_says_five(connect, git_repo, strategy):
    git_repo.write_config("fleet.yaml", {"max.sessions": 5})
    git_repo.commit()
    repo = connect(strategy=strategy)
    assert sync(repo).status == SyncStatus.APPLIED
    return repo, DesiredEntry.objects.get(key="max.sessions")


def set_config_values():
    return [
        c.params["values"]
        for c in Command.objects.filter(source=CommandSource.GITOPS, kind=CommandType.SET_CONFIG).order_by("id")
    ]


def test_git_wins_reasserts_git_over_a_panel_edit_on_an_unchanged_head(
    connect, git_repo, fleet, admin_api, queued_syncs, django_capture_on_commit_callbacks
):
    repo, entry = _git_says_five(connect, git_repo, ConflictStrategy.GIT_WINS)
    with django_capture_on_commit_callbacks(execute=True):  # and the worker's planning (the conftest runs it)
        response = admin_api.put(f"{API}/desired-config/{entry.pk}", {"value": 99}, format="json")
    assert response.status_code == 202 and set_config_values()[-1] == {"max.sessions": 99}

    with django_capture_on_commit_callbacks(execute=True):
        assert admin_api.post(f"{API}/{repo.pk}/sync").status_code == 202  # the same commit as before
    pk, trigger = queued_syncs[-1]
    assert pk == repo.pk and trigger.startswith("manual:")
    tasks.sync_repository(pk, trigger)  # what the worker runs
    run = SyncRun.objects.filter(repository=repo).latest("id")

    entry.refresh_from_db()
    assert run.status == SyncStatus.APPLIED and entry.value == 5
    assert [(c["action"], c["before"], c["after"]) for c in run.changes] == [("drift_reverted", 99, 5)]
    assert set_config_values()[-1] == {"max.sessions": 5}  # and the fleet is driven back
    assert sync(repo).status == SyncStatus.NOOP  # nothing left to re-assert


def test_server_wins_keeps_a_panel_edit_on_every_sync_and_says_so(connect, git_repo, fleet, admin_api):
    repo, entry = _git_says_five(connect, git_repo, ConflictStrategy.SERVER_WINS)
    admin_api.put(f"{API}/desired-config/{entry.pk}", {"value": 99}, format="json")

    run = sync(repo)

    entry.refresh_from_db()
    assert run.status == SyncStatus.NOOP and entry.value == 99
    assert [(c["action"], c["after"], c["git"]) for c in run.changes] == [("drift_kept", 99, 5)]
    git_repo.write_config("fleet.yaml", {"max.sessions": 6})
    git_repo.commit()
    run = sync(repo)
    entry.refresh_from_db()
    assert (entry.value, entry.git_base) == (99, 6)
    assert [(c["action"], c["git"]) for c in run.changes] == [("git_overridden", 6)]


def test_a_panel_deletion_of_a_git_key_is_undone_by_git_wins_on_the_next_sync(connect, git_repo, fleet, admin_api):
    repo, entry = _git_says_five(connect, git_repo, ConflictStrategy.GIT_WINS)
    assert admin_api.delete(f"{API}/desired-config/{entry.pk}").status_code == 204

    run = sync(repo)

    assert [(c["action"], c["effect"]) for c in run.changes] == [("drift_reverted", "added")]
    assert DesiredEntry.objects.get(level=Level.FLEET, key="max.sessions").value == 5


@pytest.mark.django_db
def test_an_unchanged_sync_reads_exactly_the_entries_the_panel_changed():
    from gitops.models import Repository
    from gitops.services.sections import _entries

    repo = Repository.objects.create(name="r", url="git@h:x", private_key_encrypted="-", public_key="-")
    pairs = [(None, None), ("x", None), (None, "x"), (1, 1), (1, True), ("1", 1), ({"a": 1}, {"a": 1}), (5, 6)]
    for n, (panel, base) in enumerate(pairs):
        DesiredEntry.objects.create(
            level="fleet", key=f"k{n}", value=panel, git_base=base, in_git=True, repository=repo
        )
    DesiredEntry.objects.create(
        level="fleet", key="gone", value=None, git_base=1, present=False, in_git=True, repository=repo
    )
    DesiredEntry.objects.create(
        level="fleet", key="kept", value=2, git_base=2, override_accepted=True, in_git=True, repository=repo
    )

    found = {e.key for e in _entries(repo, True, drifted=True)}

    assert found == {e.key for e in DesiredEntry.objects.all() if e.drifted or e.override_accepted}
    assert found == {"k1", "k2", "k4", "k5", "k7", "gone", "kept"}


def test_the_editor_says_what_the_strategy_will_do_with_a_panel_edit_of_a_git_key(
    connect, git_repo, fleet, admin_client
):
    _git_says_five(connect, git_repo, ConflictStrategy.GIT_WINS)

    response = admin_client.post(
        "/governance/gitops/config/",
        {"level": "fleet", "target": "", "key": "max.sessions", "value": "99"},
        follow=True,
    )

    assert (
        "Repository fleet-config manages this key: its next sync puts Git&#x27;s value back."
        in response.content.decode()
    )
