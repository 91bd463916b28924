"""A real Celery worker and beat against PostgreSQL and Redis sync a repository served by a real sshd."""

import json

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


def test_a_signed_push_webhook_starts_a_sync_in_the_worker(
    connect, git_repo, fleet, celery_worker_factory, settings_dir, admin_user, client
):
    import hashlib
    import hmac
    import json

    from gitops import services

    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    repo = connect()
    secret = services.repository_webhook_secret_rotate(actor=admin_user, repository=repo)
    celery_worker_factory(extra_env={"VAR_DIR": str(settings_dir.VAR_DIR)})
    wait_for(lambda: SyncRun.objects.filter(repository=repo, status=SyncStatus.APPLIED).exists(), timeout=60)
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False, "ntp.server": "pool.ntp.org"})
    sha = git_repo.commit()
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    response = client.post(
        f"/api/governance/gitops/{repo.pk}/webhook",
        data=body,
        content_type="application/json",
        HTTP_X_GITEA_EVENT="push",
        HTTP_X_GITEA_SIGNATURE=signature,
    )

    assert response.status_code == 202
    run = wait_for(
        lambda: SyncRun.objects.filter(repository=repo, trigger="webhook:gitea", status=SyncStatus.APPLIED).first(),
        timeout=30,
        message="the webhook's sync",
    )
    assert run.commit_sha == sha
    assert DesiredEntry.objects.get(key="ntp.server").value == "pool.ntp.org"


def test_two_workers_syncing_two_repositories_that_claim_one_key_apply_exactly_one(
    connect, git_repo, other_git_repo, fleet, celery_worker_factory, settings_dir
):
    from gitops import tasks

    git_repo.write_config("fleet.yaml", {"ntp.server": "from-a"})
    git_repo.commit()
    other_git_repo.write_config("fleet.yaml", {"ntp.server": "from-b"})
    other_git_repo.commit()
    a, b = connect(name="a"), connect(name="b", git=other_git_repo)
    var = {"VAR_DIR": str(settings_dir.VAR_DIR)}
    celery_worker_factory(extra_env=var)
    celery_worker_factory(extra_env=var)
    for repo in (a, b):  # the connect's own sync tasks are queued too: both race from the start
        tasks.sync_repository.delay(repo.pk, "race")

    def finished():
        done = SyncRun.objects.exclude(status=SyncStatus.RUNNING).filter(repository__in=[a, b])
        return len({r.repository_id for r in done if r.status in (SyncStatus.APPLIED, SyncStatus.INVALID)}) == 2

    wait_for(finished, timeout=60, message="both syncs")
    applied = SyncRun.objects.filter(status=SyncStatus.APPLIED).values_list("repository__name", flat=True)
    invalid = SyncRun.objects.filter(status=SyncStatus.INVALID)
    assert len(set(applied)) == 1 and invalid.exists()
    winner = applied[0]
    loser = "b" if winner == "a" else "a"
    assert {r.repository.name for r in invalid} == {loser}
    assert f"already defined by repository '{winner}'" in invalid.first().errors[0]
    entry = DesiredEntry.objects.get(key="ntp.server")
    assert entry.repository.name == winner and entry.value == f"from-{winner}"


def test_a_fleet_level_edit_through_the_api_is_planned_by_the_worker_and_each_change_queued_once(
    fleet, enterprise_license, admin_api, celery_worker_factory
):
    from collections import defaultdict

    from fleet.choices import CommandSource, RunStatus
    from fleet.models import CommandRun

    celery_worker_factory()  # two threads: the two edits' planning may run side by side
    api = "/api/governance/gitops/desired-config"
    first = admin_api.post(api, {"level": "fleet", "key": "ntp.server", "value": "pool"}, format="json")
    second = admin_api.post(api, {"level": "fleet", "key": "motd", "value": "hi"}, format="json")
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.data["planning"]["instances"] == 3

    def newest_per_instance():
        runs = CommandRun.objects.filter(command__source=CommandSource.GITOPS, status=RunStatus.PENDING)
        by_instance = defaultdict(list)
        for name, params in runs.order_by("command_id").values_list("instance__name", "command__params"):
            by_instance[name].append(params)
        return by_instance

    want = {"values": {"motd": "hi", "ntp.server": "pool"}, "unset": []}
    wait_for(
        lambda: sorted(n for n, p in newest_per_instance().items() if p[-1] == want) == ["db-01", "web-01", "web-02"],
        timeout=60,
        message="the worker queueing both changes for every instance",
    )
    for name, queued in newest_per_instance().items():  # one drive at a time: no change queued twice
        assert len(queued) == len({json.dumps(p, sort_keys=True) for p in queued}), (name, queued)
