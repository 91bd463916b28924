"""Where a repository is read from: a sub-directory, a pinned tag or commit, "sync to revision";
and pruning keys removed from Git (real sshd and git)."""

import pytest

from fleet.choices import CommandSource, CommandType
from fleet.models import Command, Instance
from gitops import services
from gitops.choices import Level, RepositoryStatus, SyncStatus
from gitops.models import DesiredEntry

from .conftest import sync

pytestmark = pytest.mark.integration
API = "/api/governance/gitops"


def value(key, level=Level.FLEET, target=""):
    entry = DesiredEntry.objects.filter(level=level, target=target, key=key, present=True).first()
    return entry.value if entry else None


def test_a_sub_directory_is_read_on_its_own_and_problems_name_the_full_path(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"top": 1})
    git_repo.write_config("clusters/prod/fleet.yaml", {"prod": 1})
    git_repo.write_config("clusters/prod/groups/web.yaml", {"web": 1})
    git_repo.write_config("clusters/staging/fleet.yaml", {"staging": 1})
    git_repo.commit()
    repo = connect(path="clusters/prod")

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED, run.errors
    assert (value("prod"), value("web", Level.GROUP, "web"), value("top"), value("staging")) == (1, 1, None, None)
    assert DesiredEntry.objects.get(key="prod").git_path == "clusters/prod/fleet.yaml"
    git_repo.write("clusters/prod/groups/nope.yaml", "settings: {a: 1}\n")
    git_repo.commit()
    assert sync(repo).errors == ["clusters/prod/groups/nope.yaml, line 1: there is no group named 'nope' in the fleet"]


def test_a_sub_directory_missing_from_the_commit_is_an_invalid_commit(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"top": 1})
    git_repo.commit()
    repo = connect(path="clusters/nowhere")

    run = sync(repo)

    assert (
        run.status == SyncStatus.INVALID and "clusters/nowhere, line 1: this directory does not exist" in run.errors[0]
    )


def _three_commits(git_repo):
    shas = []
    for n in (1, 2, 3):
        git_repo.write_config("fleet.yaml", {"release": n})
        shas.append(git_repo.commit(f"release {n}"))
    return shas


def test_sync_to_revision_rolls_the_fleet_back_as_its_own_run_and_stays_there(
    connect, git_repo, fleet, admin_api, admin_user, queued_syncs, django_capture_on_commit_callbacks
):
    first, _second, third = _three_commits(git_repo)
    repo = connect()
    assert sync(repo).commit_sha == third and value("release") == 3

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(f"{API}/{repo.pk}/sync-to-revision", {"revision": first[:10]}, format="json")
    assert response.status_code == 202 and response.data["revision"] == first[:10]
    assert queued_syncs[-1] == (repo.pk, "revision", first[:10])
    run = services.repository_sync(repository_id=repo.pk, trigger="revision", revision=first[:10])

    repo.refresh_from_db()
    assert run.status == SyncStatus.APPLIED and run.commit_sha == first and run.revision == first[:10]
    assert value("release") == 1 and repo.last_commit_sha == first
    assert [(c["before"], c["after"]) for c in run.changes] == [(3, 1)]
    assert sync(repo).status == SyncStatus.NOOP  # the schedule does not bring the head back
    services.repository_update(actor=admin_user, repository=repo, revision="")
    assert sync(repo).commit_sha == third and value("release") == 3


def test_a_repository_pinned_to_an_annotated_tag_follows_the_tag(connect, git_repo, fleet):
    first, *_ = _three_commits(git_repo)
    git_repo._git("tag", "-a", "-m", "stable", "stable", first, cwd=git_repo.work)
    git_repo._git("push", "-q", str(git_repo.path), "refs/tags/stable", cwd=git_repo.work)
    repo = connect(revision="stable")

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED and run.commit_sha == first and value("release") == 1


def test_an_unknown_revision_fails_clearly(connect, git_repo, fleet):
    _three_commits(git_repo)
    repo = connect(revision="0123456789abcdef")

    run = sync(repo)

    assert run.status == SyncStatus.FAILED and run.errors == ["There is no commit 0123456789abcdef on branch 'main'."]
    assert repo.status == RepositoryStatus.ERROR


def test_revisions_and_paths_that_cannot_be_are_refused(connect, admin_api):
    repo = connect()
    for body, field in (
        ({"revision": "a..b"}, "revision"),
        ({"path": "../etc"}, "path"),
        ({"path": "a//b"}, "path"),
    ):
        response = admin_api.patch(f"{API}/{repo.pk}", body, format="json")
        assert response.status_code == 400 and field in response.data["errors"], response.data
    response = admin_api.post(f"{API}/{repo.pk}/sync-to-revision", {"revision": "x y"}, format="json")
    assert response.status_code == 400 and "revision" in response.data["errors"]


@pytest.mark.parametrize("prune", [True, False])
def test_keys_removed_from_git_are_unset_on_instances_only_with_prune(prune, connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"motd": "hello", "ntp.server": "a"}, {"monitoring-agent": "1.4.0"})
    git_repo.write_config("groups/db.yaml", {"db.cache": 1})
    git_repo.commit()
    repo = connect(prune=prune)
    sync(repo)
    Instance.objects.update(settings={"motd": "hello", "ntp.server": "a", "db.cache": 1})  # agents applied it
    Instance.objects.filter(name="web-01").update(settings={"motd": "hello", "ntp.server": "a", "db.cache": 7})
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})  # motd and the app pin go, and db's cache
    git_repo.remove("groups/db.yaml")
    git_repo.commit()

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED and value("motd") is None
    assert {c["key"]: c["effect"] for c in run.changes} == {
        "motd": "removed",
        "app:monitoring-agent": "removed",
        "db.cache": "removed",
    }
    unsets = {
        r.instance.name: r.command.params["unset"]
        for c in Command.objects.filter(source=CommandSource.GITOPS, kind=CommandType.SET_CONFIG)
        for r in c.runs.all()
        if c.params["unset"]
    }
    if prune:
        # db.cache came from group db only: web-01's own db.cache is not Git's to remove.
        assert unsets == {"web-01": ["motd"], "web-02": ["motd"], "db-01": ["db.cache", "motd"]}
        assert not Command.objects.filter(kind=CommandType.UNINSTALL_APP).exists()  # an app pin is released
    else:
        assert unsets == {}


def test_a_repository_pinned_to_a_commit_stays_there_when_the_branch_moves(connect, git_repo, fleet, admin_user):
    first, second, third = _three_commits(git_repo)
    repo = connect(revision=second)

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED and run.commit_sha == second and value("release") == 2
    git_repo.write_config("fleet.yaml", {"release": 4})
    git_repo.commit("release 4")
    assert sync(repo).status == SyncStatus.NOOP and value("release") == 2
    services.repository_update(actor=admin_user, repository=repo, revision=first[:12])
    run = sync(repo)
    assert (run.status, run.commit_sha, run.revision, value("release")) == (SyncStatus.APPLIED, first, first[:12], 1)
