"""Previews: fetch and validate the head, say what a sync would do, apply nothing (real sshd and git)."""

import pytest

from fleet.models import Command
from gitops import services, tasks
from gitops.choices import ConflictStrategy, Level, RepositoryStatus, SyncStatus
from gitops.models import Conflict, DesiredEntry, SyncRun

from .conftest import sync

pytestmark = pytest.mark.integration
API = "/api/governance/gitops"


def store_snapshot():
    return sorted(DesiredEntry.objects.values_list("level", "target", "key", "value", "present", "git_base"))


def comparable(commands):
    return [(c["kind"], c["params"], sorted(c["instances"]), c["instance_count"]) for c in commands]


@pytest.fixture
def moved_on(connect, git_repo, fleet, admin_user):
    """A synced repository (git_wins) whose branch has since added, changed and removed keys, with a
    panel edit of one of its keys."""
    git_repo.write_config("fleet.yaml", {"a": 1, "b": 2, "c": 3})
    git_repo.commit()
    repo = connect(strategy=ConflictStrategy.GIT_WINS)
    assert sync(repo).status == SyncStatus.APPLIED
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="c", value=30)
    git_repo.write_config("fleet.yaml", {"a": 1, "b": 20, "c": 3})
    git_repo.write_config("groups/web.yaml", {"d": 4}, {"monitoring-agent": "2.0"})
    git_repo.commit()
    return repo


def test_a_preview_applies_nothing_and_equals_the_following_sync(
    moved_on, admin_api, queued_syncs, fleet, django_capture_on_commit_callbacks
):
    before, commands_before = store_snapshot(), Command.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(f"{API}/{moved_on.pk}/preview")
    assert response.status_code == 202 and response.data["dry_run"] and response.data["status"] == "running"
    assert queued_syncs == [("preview", response.data["id"])]
    tasks.preview_repository(response.data["id"])  # what the worker runs
    preview = admin_api.get(f"{API}/runs/{response.data['id']}").data

    assert preview["status"] == SyncStatus.PREVIEW, preview["errors"]
    assert store_snapshot() == before and Command.objects.count() == commands_before
    moved_on.refresh_from_db()
    assert moved_on.head_sha != preview["commit_sha"] and moved_on.status == RepositoryStatus.OK
    effects = {c["key"]: (c["action"], c["effect"]) for c in preview["changes"]}
    assert effects == {
        "b": ("git_applied", "changed"),
        "c": ("drift_reverted", "changed"),
        "d": ("git_applied", "added"),
        "app:monitoring-agent": ("git_applied", "added"),
    }
    assert {"kind": "update_app", "params": {"app": "monitoring-agent", "version": "2.0"}} in preview["by_instance"][
        "web-01"
    ]
    assert "db-01" in preview["by_instance"] and preview["commands_issued"] == 0

    run = sync(moved_on)

    assert run.status == SyncStatus.APPLIED
    assert run.changes == preview["changes"] and run.commit_sha == preview["commit_sha"]
    assert comparable(run.commands) == comparable(preview["commands"])


def test_a_preview_lists_the_conflicts_a_manual_sync_would_pause_on(connect, git_repo, fleet, admin_user):
    git_repo.write_config("fleet.yaml", {"a": 1})
    git_repo.commit()
    repo = connect(strategy=ConflictStrategy.MANUAL)
    sync(repo)
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="a", value=5)
    git_repo.write_config("fleet.yaml", {"a": 2})
    git_repo.commit()

    run = services.repository_preview(run_id=services.repository_preview_request(actor=admin_user, repository=repo).pk)

    assert run.status == SyncStatus.PREVIEW and not Conflict.objects.exists()
    assert [(c["key"], c["effect"], c["before"], c["git"]) for c in run.changes] == [("a", "conflict", 5, 2)]
    assert "would pause" in run.log


def test_a_preview_of_an_invalid_commit_names_the_problems_and_leaves_the_repository_as_it_was(
    connect, git_repo, fleet, admin_user
):
    git_repo.write_config("fleet.yaml", {"a": 1})
    git_repo.commit()
    repo = connect()
    sync(repo)
    git_repo.write("groups/nope.yaml", "settings: {x: 1}\n")
    git_repo.commit()

    run = services.repository_preview(run_id=services.repository_preview_request(actor=admin_user, repository=repo).pk)

    repo.refresh_from_db()
    assert run.status == SyncStatus.INVALID
    assert run.errors == ["groups/nope.yaml, line 1: there is no group named 'nope' in the fleet"]
    assert repo.status == RepositoryStatus.OK and repo.last_error == ""


def test_a_preview_waits_while_a_sync_holds_the_repository(connect, git_repo, fleet, admin_user):
    from django.utils import timezone

    repo = connect()
    run = services.repository_preview_request(actor=admin_user, repository=repo)
    type(repo).objects.filter(pk=repo.pk).update(sync_started_at=timezone.now())

    assert services.repository_preview(run_id=run.pk) is None  # the task retries
    assert SyncRun.objects.get(pk=run.pk).status == SyncStatus.RUNNING


def test_the_preview_button_leads_to_a_page_that_shows_the_result_when_ready(moved_on, admin_client, queued_syncs):
    response = admin_client.post(f"/governance/gitops/{moved_on.pk}/preview/", follow=True)

    run = SyncRun.objects.get(dry_run=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/governance/gitops/runs/{run.pk}/"
    assert "Preview #" in page and 'hx-trigger="every 1s"' in page
    tasks.preview_repository(run.pk)
    part = admin_client.get(f"/governance/gitops/runs/{run.pk}/?partial=run", HTTP_HX_REQUEST="true").content.decode()
    assert "Nothing was applied" in part and "Per instance" in part and "every 1s" not in part
    assert "monitoring-agent" in part and "<html" not in part
