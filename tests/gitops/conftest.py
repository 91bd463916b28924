import pytest

from fleet.models import Group, Instance, Tag
from gitops import services, tasks
from gitops.choices import ConflictStrategy
from tests.base import service_unavailable

from .sshd import GitRepo, SSHServer, tools_available


@pytest.fixture(autouse=True)
def queued_syncs(request, monkeypatch):
    """Sync tasks the code under test enqueues, recorded instead of sent to a broker (tests call the
    service themselves). Tests with a real Celery worker get the real thing."""
    if "celery_worker_factory" in request.fixturenames:
        return None
    queued = []

    def record(pk, trigger="schedule", revision=""):
        queued.append((pk, trigger, revision) if revision else (pk, trigger))

    monkeypatch.setattr("gitops.tasks.sync_repository.delay", record)
    monkeypatch.setattr("gitops.tasks.preview_repository.delay", lambda run_id: queued.append(("preview", run_id)))
    monkeypatch.setattr("gitops.tasks.scan_host_key.delay", lambda pk: queued.append(("scan", pk)))
    monkeypatch.setattr("gitops.tasks.reconcile_instance.delay", lambda pk: queued.append(("reconcile", pk)))

    def drive(*args):  # a panel edit's planning: recorded, and done at once (the worker's half, as a call)
        queued.append(("drive", *args[1:3]))
        tasks.drive_desired_config(*args)

    monkeypatch.setattr("gitops.tasks.drive_desired_config.delay", drive)
    return queued


@pytest.fixture
def sshd(tmp_path):
    """A real sshd on a free loopback port, torn down after the test."""
    if not tools_available():
        service_unavailable("openssh-server and git (apt-get install -y openssh-server git)")
    server = SSHServer(tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.fixture
def git_repo(tmp_path):
    return GitRepo(tmp_path / "git")


@pytest.fixture
def other_git_repo(tmp_path):
    """A second repository on the same server, for repositories side by side."""
    return GitRepo(tmp_path / "git-other")


@pytest.fixture
def fleet(db):
    """Three instances: web-01 and web-02 in group web (web-01 tagged env=production), db-01 in group db."""
    web, dbg = Group.objects.create(name="web"), Group.objects.create(name="db")
    prod = Tag.objects.create(key="env", value="production")
    instances = {}
    for name, group in (("web-01", web), ("web-02", web), ("db-01", dbg)):
        inst = Instance.objects.create(
            name=name,
            settings={"ssh.password_auth": True},
            apps=[{"name": "monitoring-agent", "version": "1.4.0", "running": True}],
        )
        inst.groups.add(group)
        instances[name] = inst
    instances["web-01"].tags.add(prod)
    return instances


@pytest.fixture
def settings_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings


@pytest.fixture
def connect(sshd, git_repo, admin_user, settings_dir, enterprise_license):
    """connect(strategy=...) → a Repository pinned to the test sshd, its generated deploy key authorized."""

    def _connect(strategy=ConflictStrategy.MANUAL, name="fleet-config", git=None, **kwargs):
        repo = services.repository_connect(
            actor=admin_user,
            name=name,
            url=sshd.url(git or git_repo),
            branch="main",
            sync_interval=60,
            conflict_strategy=strategy,
            known_hosts=sshd.known_hosts_line(),
            **kwargs,
        )
        sshd.authorize(repo.public_key)
        return repo

    return _connect


def sync(repo, trigger="test"):
    run = services.repository_sync(repository_id=repo.pk, trigger=trigger)
    repo.refresh_from_db()
    return run
