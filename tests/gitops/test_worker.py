"""A real Celery worker and beat against PostgreSQL and Redis sync a repository served by a real sshd."""

import pytest

from gitops.choices import Level, RepositoryStatus, SyncStatus
from gitops.models import DesiredEntry, Repository, SyncRun
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_syncs_a_newly_connected_repository_and_beat_resyncs_it_when_due(
    connect, git_repo, fleet, celery_worker_factory, settings_dir
):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    sha = git_repo.commit()
    repo = connect()
    var = {"VAR_DIR": str(settings_dir.VAR_DIR)}
    celery_worker_factory(extra_env=var)
    celery_worker_factory(beat=True, extra_env=var)

    wait_for(
        lambda: SyncRun.objects.filter(repository=repo, status=SyncStatus.APPLIED).exists(),
        timeout=60,
        message="the first sync",
    )

    repo.refresh_from_db()
    assert repo.last_commit_sha == sha and repo.status == RepositoryStatus.OK
    assert DesiredEntry.objects.get(level=Level.FLEET, key="ssh.password_auth").value is False
    assert SyncRun.objects.get(repository=repo, status=SyncStatus.APPLIED).trigger == "schedule"
    # Pull the next sync forward: the beat's next scan finds the unchanged commit and records a no-op.
    Repository.objects.filter(pk=repo.pk).update(next_sync_at=repo.last_sync_at)
    wait_for(
        lambda: SyncRun.objects.filter(repository=repo, status=SyncStatus.NOOP).exists(),
        timeout=45,
        message="a no-op sync",
    )
