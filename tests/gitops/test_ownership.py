"""Several repositories side by side, against a real sshd: each owns its keys, overlaps are refused,
disconnecting keeps or removes what a repository owned."""

import pytest

from fleet.choices import CommandSource, CommandType
from fleet.models import Command, Instance
from gitops import services
from gitops.choices import ConflictStrategy, Level, RepositoryStatus, SyncStatus
from gitops.models import Conflict, DesiredEntry

from .conftest import sync

pytestmark = pytest.mark.integration
API = "/api/governance/gitops"


def value(level, target, key):
    entry = DesiredEntry.objects.filter(level=level, target=target, key=key, present=True).first()
    return entry.value if entry else None


@pytest.fixture
def side_by_side(connect, git_repo, other_git_repo, fleet):
    """Repository A (fleet.yaml: k1) and repository B (instances/db-01.yaml: k2), both synced."""
    git_repo.write_config("fleet.yaml", {"k1": 1})
    git_repo.commit()
    other_git_repo.write_config("instances/db-01.yaml", {"k2": 2})
    other_git_repo.commit()
    a, b = connect(name="a"), connect(name="b", git=other_git_repo)
    assert sync(a).status == SyncStatus.APPLIED
    return a, b


def test_a_second_repository_adds_its_keys_and_leaves_the_first_ones_alone(side_by_side, git_repo):
    a, b = side_by_side

    run_b = sync(b)

    assert run_b.status == SyncStatus.APPLIED, run_b.errors
    assert [(c["key"], c["effect"]) for c in run_b.changes] == [("k2", "added")]
    assert "store: 1 added, 0 changed, 0 removed" in run_b.log
    assert value(Level.FLEET, "", "k1") == 1 and value(Level.INSTANCE, "db-01", "k2") == 2
    assert DesiredEntry.objects.get(key="k1").repository == a
    assert DesiredEntry.objects.get(key="k2").repository == b
    git_repo.write_config("fleet.yaml", {"k1": 10})
    git_repo.commit()
    run_a = sync(a)
    assert [(c["key"], c["after"]) for c in run_a.changes] == [("k1", 10)]
    assert value(Level.INSTANCE, "db-01", "k2") == 2  # A's commit deletes nothing of B's


def test_a_key_two_repositories_define_is_an_error_of_the_later_sync_naming_both_and_applying_nothing(
    side_by_side, other_git_repo
):
    a, b = side_by_side
    other_git_repo.write("fleet.yaml", "settings:\n  k3: 3\n  k1: 2\n")
    other_git_repo.commit()

    run = sync(b)

    assert run.status == SyncStatus.INVALID and b.status == RepositoryStatus.INVALID
    assert run.errors == [
        "fleet.yaml, line 3: 'k1' for the fleet is already defined by repository 'a' (fleet.yaml, line 2); "
        "a key belongs to one repository, so 'b' cannot define it too"
    ]
    assert value(Level.FLEET, "", "k1") == 1  # A's value stands
    assert (
        value(Level.FLEET, "", "k3") is None and value(Level.INSTANCE, "db-01", "k2") is None
    )  # nothing of B's commit
    a.refresh_from_db()
    assert a.status == RepositoryStatus.OK


def test_a_disconnected_repositorys_keys_kept_as_panel_owned_never_pause_another_repository(
    side_by_side, git_repo, admin_user, admin_api
):
    a, b = side_by_side
    sync(b)
    services.repository_update(actor=admin_user, repository=a, conflict_strategy=ConflictStrategy.MANUAL)

    assert admin_api.delete(f"{API}/{b.pk}?entries=keep").status_code == 204
    entry = DesiredEntry.objects.get(key="k2")
    assert (entry.value, entry.repository, entry.in_git, entry.git_base) == (2, None, False, None)
    services.desired_entry_set(actor=admin_user, level=Level.INSTANCE, target="db-01", key="k2", value=3)
    git_repo.write_config("fleet.yaml", {"k1": 5})
    git_repo.commit()

    run = sync(a)

    assert run.status == SyncStatus.APPLIED and not Conflict.objects.exists()
    assert value(Level.INSTANCE, "db-01", "k2") == 3 and value(Level.FLEET, "", "k1") == 5


def test_disconnecting_with_remove_deletes_the_entries_and_with_prune_unsets_them_on_instances(
    side_by_side, admin_user, admin_api
):
    a, b = side_by_side
    services.repository_update(actor=admin_user, repository=a, prune=True)
    Instance.objects.update(settings={"k1": 1})  # the agents applied the first sync
    assert admin_api.delete(f"{API}/{a.pk}?entries=remove").status_code == 204

    assert not DesiredEntry.objects.filter(key="k1").exists()
    unset = Command.objects.filter(source=CommandSource.GITOPS, kind=CommandType.SET_CONFIG).latest("id")
    assert unset.params == {"values": {}, "unset": ["k1"]} and unset.runs.count() == 3
    assert admin_api.delete(f"{API}/{b.pk}?entries=sideways").status_code == 400


def test_a_brand_new_repository_takes_over_an_equal_panel_key_without_a_conflict(
    connect, other_git_repo, fleet, admin_user
):
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="ntp.server", value="a")
    other_git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    other_git_repo.commit()
    repo = connect(name="new", git=other_git_repo)

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED and [c["action"] for c in run.changes] == ["converged"]
    entry = DesiredEntry.objects.get(key="ntp.server")
    assert entry.repository == repo and (entry.git_path, entry.git_line) == ("fleet.yaml", 2)


def test_the_issue_scenario_two_repositories_a_disconnect_a_panel_edit_and_a_brand_new_repository(
    connect, git_repo, other_git_repo, tmp_path, fleet, admin_api
):
    """Issue #14, "what was seen" 1, step by step: nothing of one repository is removed, re-applied or
    paused on by another, before or after a disconnect."""
    from .sshd import GitRepo

    Instance.objects.create(name="acc-04")
    git_repo.write_config("fleet.yaml", {"k1": 1})
    git_repo.commit()
    other_git_repo.write_config("instances/acc-04.yaml", {"k2": 2})
    other_git_repo.commit()
    a, b = connect(name="a"), connect(name="b", git=other_git_repo)
    assert sync(a).status == SyncStatus.APPLIED

    run_b = sync(b)
    assert run_b.status == SyncStatus.APPLIED and "store: 1 added, 0 changed, 0 removed" in run_b.log
    keys = {
        (e["level"], e["target"], e["key"]): e["value"] for e in admin_api.get(f"{API}/desired-config").data["results"]
    }
    assert keys == {("fleet", "", "k1"): 1, ("instance", "acc-04", "k2"): 2}

    run_a = sync(a)  # A's head has not moved
    assert run_a.status == SyncStatus.NOOP and run_a.changes == []
    assert value(Level.FLEET, "", "k1") == 1 and value(Level.INSTANCE, "acc-04", "k2") == 2

    assert admin_api.delete(f"{API}/{b.pk}?entries=keep").status_code == 204
    k2 = DesiredEntry.objects.get(key="k2")
    assert admin_api.put(f"{API}/desired-config/{k2.pk}", {"value": 3}, format="json").status_code == 202
    assert sync(a).status == SyncStatus.NOOP  # A never had k2: nothing to ask about
    git_repo.write_config("fleet.yaml", {"k1": 10})
    git_repo.commit()
    run_a = sync(a)
    assert run_a.status == SyncStatus.APPLIED and [c["key"] for c in run_a.changes] == ["k1"]
    assert not Conflict.objects.exists() and value(Level.INSTANCE, "acc-04", "k2") == 3

    newcomer = GitRepo(tmp_path / "git-new")
    newcomer.write_config("fleet.yaml", {"k3": 3})
    newcomer.commit()
    c = connect(name="c", git=newcomer, strategy=ConflictStrategy.MANUAL)
    run_c = sync(c)
    assert run_c.status == SyncStatus.APPLIED and [c["key"] for c in run_c.changes] == ["k3"]
    assert not Conflict.objects.exists()
    assert (value(Level.FLEET, "", "k1"), value(Level.INSTANCE, "acc-04", "k2"), value(Level.FLEET, "", "k3")) == (
        10,
        3,
        3,
    )
    assert DesiredEntry.objects.get(key="k2").repository is None  # still the panel's


def test_a_new_repository_defining_a_kept_key_with_another_value_asks_under_manual_and_takes_it_under_git_wins(
    side_by_side, admin_api, tmp_path, connect
):
    """A kept entry is the panel's: a commit that defines it again is decided like any panel key both
    sides added — never paused on when the commit does not define it (test above)."""
    from .sshd import GitRepo

    a, b = side_by_side
    sync(b)
    assert admin_api.delete(f"{API}/{b.pk}?entries=keep").status_code == 204
    for name, strategy in (("manual", ConflictStrategy.MANUAL), ("gitwins", ConflictStrategy.GIT_WINS)):
        git = GitRepo(tmp_path / f"git-{name}")
        git.write_config("instances/db-01.yaml", {"k2": 7})
        git.commit()
        repo = connect(name=name, git=git, strategy=strategy)
        run = sync(repo)
        if strategy == ConflictStrategy.MANUAL:
            assert run.status == SyncStatus.PAUSED and [(c["key"], c["before"], c["git"]) for c in run.changes] == [
                ("k2", 2, 7)
            ]
            assert value(Level.INSTANCE, "db-01", "k2") == 2
            services.repository_delete(actor=None, repository=repo)
        else:
            assert run.status == SyncStatus.APPLIED and value(Level.INSTANCE, "db-01", "k2") == 7
            assert DesiredEntry.objects.get(key="k2").repository == repo


def test_the_repository_page_disconnects_keeping_or_removing_the_entries(side_by_side, admin_client):
    a, b = side_by_side
    sync(b)
    page = admin_client.get(f"/governance/gitops/{a.pk}/").content.decode()
    assert 'name="entries" value="keep"' in page and 'name="entries" value="remove"' in page

    response = admin_client.post(f"/governance/gitops/{a.pk}/delete/", {"entries": "remove"}, follow=True)
    assert "Disconnected a; 1 desired-configuration entries removed." in response.content.decode()
    response = admin_client.post(f"/governance/gitops/{b.pk}/delete/", {"entries": "keep"}, follow=True)
    assert "Disconnected b; 1 desired-configuration entries kept as panel-owned." in response.content.decode()

    assert list(DesiredEntry.objects.values_list("key", "repository")) == [("k2", None)]
