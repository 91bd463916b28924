"""GitOps sync benchmark: a repository with 10,000 instance files, served by a real sshd.

Measures, against a PostgreSQL database of 10,000 instances:
  * the first sync (fetch + validate + merge into the store + queue commands), against a floor of a
    plain `git clone --bare` of the same repository over the same sshd (target ≤ 10 s);
  * a preview of the same repository from an empty mirror (fetch + validate + plan every key and
    every instance's commands, applying nothing), against the same floor (target ≤ the first sync),
    after one untimed preview that takes the process's cold start off both timed runs;
  * a sync of the unchanged commit (re-asserting the strategy), against `git ls-remote` (target ≤ 1 s);
  * push webhook → sync started in a real Celery worker (signature checked, task queued through Redis,
    the worker's claim), against a floor of the same task queued directly (target ≤ 1 s).

    .venv/bin/python bench/gitops_sync.py [--instances 10000] [--drift 0.05]

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/bench_gitops (created and migrated here);
CELERY_BROKER_URL to redis://127.0.0.1:6379/6.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import fresh_database, install_license, report, timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--drift", type=float, default=0.05, help="share of instances whose reported state differs")
    parser.add_argument("--rounds", type=int, default=3, help="(preview, first sync) pairs; medians are reported")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_gitops")
    work = Path(tempfile.mkdtemp(prefix="bench-gitops-"))
    os.environ.update(
        DATABASE_URL=url,
        VAR_DIR=str(work / "var"),
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="WARNING",
        CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/6"),
    )
    fresh_database(url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from django.db import connection

    install_license("enterprise")

    from fleet.models import Group, Instance
    from gitops import services
    from gitops.choices import ConflictStrategy
    from gitops.models import DesiredEntry
    from gitops.repoformat import render_file
    from gitops.sshkeys import generate_keypair
    from tests.gitops.sshd import GitRepo, SSHServer

    n = args.instances
    rng = random.Random(42)
    print(f"Setting up {n} instances in {connection.settings_dict['NAME']} and a repository with {n} instance files…")
    groups = [Group.objects.create(name=f"g{i}") for i in range(10)]
    names = [f"web-{i:05d}" for i in range(n)]
    drifted = set(rng.sample(range(n), int(n * args.drift)))
    instances = []
    for i, name in enumerate(names):
        ok = i not in drifted
        instances.append(
            Instance(
                name=name,
                settings={"ssh.password_auth": False, "node.id": name if ok else "old", "ssh.port": 22},
                apps=[{"name": "monitoring-agent", "version": "1.4.2" if ok else "1.4.0", "running": True}],
            )
        )
    Instance.objects.bulk_create(instances, batch_size=2000)
    through = Instance.groups.through
    ids = dict(Instance.objects.values_list("name", "pk"))
    through.objects.bulk_create(
        [through(instance_id=ids[name], group_id=groups[i % 10].pk) for i, name in enumerate(names)], batch_size=5000
    )

    server = SSHServer(work / "sshd").start()
    repo_dir = GitRepo(work / "git")
    repo_dir.write_config("fleet.yaml", {"ssh.password_auth": False}, {"monitoring-agent": "1.4.2"})
    for i in range(10):
        repo_dir.write_config(f"groups/g{i}.yaml", {"ssh.port": 22})
    for name in names:
        repo_dir.write(f"instances/{name}.yaml", render_file({"node.id": name}, {}))
    t_commit, sha = timed(lambda: repo_dir.commit("10k instances"))
    print(f"  committed {n + 11} files in {t_commit:.1f} s (setup, not measured)")

    private, public = generate_keypair()
    server.authorize(public)
    key_file = work / "id_bench"
    key_file.write_text(private)
    key_file.chmod(0o600)
    known = work / "known_hosts"
    host_pub = server.host_key_path.with_suffix(".pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{server.port} {host_pub[0]} {host_pub[1]}\n")
    ssh = f"ssh -i {key_file} -o IdentitiesOnly=yes -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o BatchMode=yes"
    env = {**os.environ, "GIT_SSH_COMMAND": ssh}
    remote = server.url(repo_dir)

    # Floors, measured now on the same machine, sshd and repository.
    clones = []
    for i in range(3):  # the median of three, as the figures it divides are medians
        clone = ["git", "clone", "-q", "--bare", "--single-branch", "-b", "main", remote, str(work / f"clone{i}.git")]
        clones.append(timed(lambda: subprocess.run(clone, env=env, check=True))[0])  # noqa: B023 - called at once
    floor_clone = sorted(clones)[1]
    floor_ls, _ = timed(
        lambda: subprocess.run(
            ["git", "ls-remote", remote, "refs/heads/main"], env=env, check=True, capture_output=True
        )
    )

    from common.models import User

    admin = User.objects.create_user(username="bench", password="x", role="admin")
    repo = services.repository_connect(
        actor=admin,
        name="bench",
        url=remote,
        branch="main",
        sync_interval=60,
        conflict_strategy=ConflictStrategy.MANUAL,
        auth_method="uploaded",
        private_key=private,
        known_hosts=" ".join(host_pub[:2]),
    )

    from gitops.models import SyncRun

    # One untimed preview first: whichever operation runs first in this process pays its cold start (the
    # first SSH handshake, imports, the first queries over 10,000 instances), which a long-running
    # worker pays once, not per sync. Without it the preview ran first and its ls-remote, fetch and read
    # took 0.9 s longer than the same phases of the sync after it, more than the 0.4 s by which it then
    # "missed" the sync. Then ROUNDS pairs (preview, first sync), each from an empty mirror and the
    # first sync from an empty store and command queue, medians reported: the machine is shared, and a
    # burst of someone else's work during one run moved a single figure by 2x.
    warm = _preview(services, admin, repo)
    assert warm.status == "preview", warm.errors
    previews, firsts = [], []
    for _ in range(args.rounds):
        _reset(services, repo)
        previews.append(timed(lambda: _preview(services, admin, repo)))
        assert previews[-1][1].status == "preview", previews[-1][1].errors
        _reset(services, repo)
        assert not DesiredEntry.objects.exists() and not SyncRun.objects.filter(dry_run=False).exists()
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            prof = cProfile.Profile()
            firsts.append(
                timed(lambda p=prof: p.runcall(services.repository_sync, repository_id=repo.pk, trigger="bench"))
            )
            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
        else:
            firsts.append(timed(lambda: services.repository_sync(repository_id=repo.pk, trigger="bench")))
        assert firsts[-1][1].status == "applied", firsts[-1][1].errors
    t_preview, preview = sorted(previews, key=lambda p: p[0])[len(previews) // 2]
    t_first, run = sorted(firsts, key=lambda p: p[0])[len(firsts) // 2]
    print(
        f"  previews {', '.join(f'{t:.2f}' for t, _ in previews)} s; first syncs {', '.join(f'{t:.2f}' for t, _ in firsts)} s"
    )
    entries = DesiredEntry.objects.count()
    queued = sum(c["instance_count"] for c in run.commands)
    repo.refresh_from_db()
    noop_times = []
    for _ in range(5):
        t, run2 = timed(lambda: services.repository_sync(repository_id=repo.pk, trigger="bench"))
        assert run2.status == "noop", (run2.status, run2.errors)
        noop_times.append(t)
    t_noop = sorted(noop_times)[len(noop_times) // 2]

    store_done = next(float(line.split("s]")[0].strip("[ ")) for line in run.log.splitlines() if "] store:" in line)
    queueing = t_first - store_done

    print()
    print(
        f"Repository: {n} instance files + 11 others; {entries} store entries; {len(run.commands)} commands, {queued} runs queued "
        f"({len(drifted)} drifted instances)"
    )
    print(
        f"First sync:      {t_first:7.2f} s   floor (git clone --bare over ssh) {floor_clone:6.2f} s   ratio {t_first / floor_clone:5.1f}x   target ≤ 10 s  {'OK' if t_first <= 10 else 'MISSED'}  (median of {args.rounds})"
    )
    print(
        f"  of which fetch+validate+store {store_done:.2f} s (ratio {store_done / floor_clone:.1f}x); computing every instance's "
        f"effective configuration and queueing {len(run.commands)} commands via fleet.services.command_create_many {queueing:.2f} s"
        + (f" ({queueing / len(run.commands) * 1000:.0f} ms per command)" if run.commands else "")
    )
    print(
        f"Unchanged sync:  {t_noop:7.3f} s   floor (git ls-remote over ssh)     {floor_ls:6.3f} s   ratio {t_noop / floor_ls:5.1f}x   target ≤ 1 s   {'OK' if t_noop <= 1 else 'MISSED'}  (median of 5)"
    )
    print(
        f"Preview:         {t_preview:7.2f} s   floor (git clone --bare over ssh) {floor_clone:6.2f} s   ratio {t_preview / floor_clone:5.1f}x   "
        f"target ≤ first sync ({t_first:.2f} s)  {'OK' if t_preview <= t_first else 'MISSED'}  (median of {args.rounds})"
    )
    webhook, floor_queue = _webhook_latency(repo, admin)
    print(
        f"Webhook → sync started: {webhook:6.3f} s   floor (the sync task queued directly) {floor_queue:6.3f} s   "
        f"ratio {webhook / floor_queue:5.1f}x   target ≤ 1 s  {'OK' if webhook <= 1 else 'MISSED'}  (median of 7)"
    )
    for title, phases in (("First sync", run), ("Preview", preview), ("Untimed warm-up preview", warm)):
        print(f"{title} phases:")
        for line in phases.log.splitlines():
            print("   ", line)
    report(
        f"gitops first sync ({n} instance files)",
        round(t_first, 3),
        "s",
        "<= 10 s",
        t_first <= 10,
        round(t_first / floor_clone, 2),
        "vs git clone",
    )
    report(
        "gitops first sync without command queueing",
        round(store_done, 3),
        "s",
        "<= 10 s",
        store_done <= 10,
        round(store_done / floor_clone, 2),
        "vs git clone",
    )
    report(
        "gitops unchanged-commit sync",
        round(t_noop, 3),
        "s",
        "<= 1 s",
        t_noop <= 1,
        round(t_noop / floor_ls, 2),
        "vs git ls-remote",
    )

    report(
        f"gitops preview ({n} instance files)",
        round(t_preview, 3),
        "s",
        "<= first sync",
        t_preview <= t_first,
        round(t_preview / floor_clone, 2),
        "vs git clone",
    )
    report(
        "gitops webhook to sync started",
        round(webhook, 3),
        "s",
        "<= 1 s",
        webhook <= 1,
        round(webhook / floor_queue, 2),
        "vs task queued directly",
    )

    server.stop()
    connection.close()
    shutil.rmtree(work, ignore_errors=True)


def _reset(services, repo):
    """Back to before the first sync: no mirror, no store entries, no GitOps commands, never synced."""
    from fleet.choices import CommandSource
    from fleet.models import Command
    from gitops.choices import RepositoryStatus
    from gitops.models import DesiredEntry, Repository, SyncRun

    shutil.rmtree(services.mirror_path(repo), ignore_errors=True)
    DesiredEntry.objects.all().delete()
    Command.objects.filter(source=CommandSource.GITOPS).delete()
    SyncRun.objects.filter(dry_run=False).delete()
    Repository.objects.filter(pk=repo.pk).update(
        head_sha="", last_commit_sha="", status=RepositoryStatus.NEVER_SYNCED, sync_started_at=None
    )


def _preview(services, admin, repo):
    run = services.repository_preview_request(actor=admin, repository=repo)
    return services.repository_preview(run_id=run.pk)


def _start_worker() -> subprocess.Popen:
    log = open(Path(os.environ["VAR_DIR"]) / "worker.log", "ab")  # noqa: SIM115 - lives as long as the worker
    args = ["worker", "-P", "threads", "-c", "2", "-l", "warning", "--without-gossip", "--without-mingle"]
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )


def _wait_started(repo, trigger: str, t0: float, timeout: float = 30.0) -> float:
    """Seconds from t0 until the worker recorded a run with `trigger` (its claim), then until it is done."""
    from gitops.models import Repository, SyncRun

    deadline = time.time() + timeout
    while time.time() < deadline:
        run = SyncRun.objects.filter(repository=repo, trigger=trigger, started_at__gte=_dt(t0)).first()
        if run is not None:
            while Repository.objects.filter(pk=repo.pk, sync_started_at__isnull=False).exists():
                time.sleep(0.01)
            return run.started_at.timestamp() - t0
        time.sleep(0.002)
    raise TimeoutError(f"no {trigger} sync started within {timeout} s")


def _dt(t: float):
    from datetime import UTC, datetime, timedelta

    return datetime.fromtimestamp(t, UTC) - timedelta(milliseconds=5)


def _webhook_latency(repo, admin) -> tuple[float, float]:
    """Median seconds from a signed push to the worker's sync start, and from queueing the task directly."""
    import hashlib
    import hmac
    import json

    from django.test import Client

    from gitops import services, tasks

    secret = services.repository_webhook_secret_rotate(actor=admin, repository=repo)
    body = json.dumps({"ref": "refs/heads/main", "after": repo.last_commit_sha}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    client, worker = Client(), _start_worker()
    try:
        t0 = time.time()
        tasks.sync_repository.delay(repo.pk, "warm-up")
        _wait_started(repo, "warm-up", t0, timeout=120)
        hooks, direct = [], []
        for _ in range(7):
            t0 = time.time()
            tasks.sync_repository.delay(repo.pk, "direct")
            direct.append(_wait_started(repo, "direct", t0))
            t0 = time.time()
            response = client.post(
                f"/api/governance/gitops/{repo.pk}/webhook",
                data=body,
                content_type="application/json",
                HTTP_X_GITHUB_EVENT="push",
                HTTP_X_HUB_SIGNATURE_256=signature,
            )
            assert response.status_code == 202, response.content
            hooks.append(_wait_started(repo, "webhook:github", t0))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return sorted(hooks)[3], sorted(direct)[3]


if __name__ == "__main__":
    main()
