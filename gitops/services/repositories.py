"""Repositories: connecting, settings, host keys, webhook secrets, disconnecting, requests to sync."""

import re
import secrets
import shutil
import time
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.exceptions import ApplicationError, ConflictError, ErrorCollector
from common.services import actor_label, audit_log
from common.validators import git_ref_problem, unstorable_reason

from .. import crypto, sshkeys, transport
from ..choices import AuthMethod, ConflictStatus, ConflictStrategy, DisconnectMode, HostKeyScan, RepositoryStatus
from ..models import Repository, SyncRun
from ..transport import RemoteError, fetch_host_key, known_hosts_name, parse_url
from ._base import actor_user, enqueue, enqueue_sync, mirror_path

MIN_INTERVAL = 30
MAX_INTERVAL = 7 * 24 * 3600
# A claim older than this belongs to a worker that died mid-sync.
STALE_CLAIM = timedelta(seconds=getattr(settings, "CELERY_TASK_TIME_LIMIT", 300) + 60)
_HEX = re.compile(r"^[0-9a-fA-F]{7,40}\Z")
_PATH_PART = re.compile(r"^[A-Za-z0-9_.=+@-]+\Z")


def path_problem(path: str) -> str | None:
    """Why `path` cannot be the sub-directory to read, or None. Relative, no `..`, plain names."""
    if not path:
        return None
    if unstorable_reason(path) or len(path) > 255:
        return "Give a relative directory of at most 255 characters, like clusters/prod."
    parts = path.strip("/").split("/")
    if any(p in ("", ".", "..") or not _PATH_PART.match(p) for p in parts):
        return f"'{path}' is not a directory of the repository: use names separated by '/', like clusters/prod."
    return None


def revision_problem(revision: str) -> str | None:
    """A pinned revision is a tag name (git's ref rules) or a commit SHA of 7 to 40 hex digits."""
    if not revision or _HEX.match(revision):
        return None
    problem = git_ref_problem(revision)
    return f"'{revision}' is neither a tag nor a commit SHA. {problem}" if problem else None


def _validator(problem):
    """A Django validator (serializer and form fields) from a `…_problem` function."""

    def validate(value):
        if value and (message := problem(value)):
            raise ValidationError(message)

    return validate


def url_problem(url: str) -> str | None:
    try:
        parse_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def private_key_problem(text: str) -> str | None:
    try:
        sshkeys.load_private_key(text)
    except sshkeys.KeyError_ as exc:
        return str(exc)
    return None


validate_url, validate_path, validate_revision, validate_private_key = map(
    _validator, (url_problem, path_problem, revision_problem, private_key_problem)
)


def _check(problems: ErrorCollector, **fields) -> None:
    """Every problem of a repository's settings at once, under the request's own field names."""
    if "url" in fields and (problem := url_problem(fields["url"])):
        problems.add("url", problem)
    if "branch" in fields and (problem := git_ref_problem(fields["branch"])):
        problems.add("branch", f"'{fields['branch']}' is not a valid branch name. {problem}")
    interval = fields.get("sync_interval")
    if interval is not None and not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        problems.add("sync_interval", f"The sync interval must be between {MIN_INTERVAL} s and 7 days.")
    strategy = fields.get("conflict_strategy")
    if strategy is not None and strategy not in ConflictStrategy.values:
        problems.add("conflict_strategy", f"Use one of {', '.join(ConflictStrategy.values)}.")
    if problem := path_problem(fields.get("path") or ""):
        problems.add("path", problem)
    if problem := revision_problem(fields.get("revision") or ""):
        problems.add("revision", problem)


def _keys(problems: ErrorCollector, *, name: str, auth_method: str, private_key: str) -> tuple[str, str] | None:
    if auth_method == AuthMethod.GENERATED:
        return sshkeys.generate_keypair(comment=f"fleet-gitops-{name}")
    if auth_method != AuthMethod.UPLOADED:
        problems.add("auth_method", f"Use one of {', '.join(AuthMethod.values)}.")
        return None
    try:
        pkey = sshkeys.load_private_key(private_key)
    except sshkeys.KeyError_ as exc:
        problems.add("private_key", str(exc))
        return None
    return private_key.strip() + "\n", sshkeys.public_key_line(pkey, comment=f"fleet-gitops-{name}")


@transaction.atomic
def repository_connect(
    *,
    actor,
    name: str,
    url: str,
    branch: str = "main",
    sync_interval: int = 300,
    conflict_strategy: str = ConflictStrategy.MANUAL,
    auth_method: str = AuthMethod.GENERATED,
    private_key: str = "",
    known_hosts: str = "",
    host_key_fingerprint: str = "",
    path: str = "",
    revision: str = "",
    prune: bool = False,
) -> Repository:
    """Connect a repository. The host key is pinned from a pasted known_hosts line (which must name the
    repository's host), or fetched by a worker and held until an admin confirms its fingerprint (an
    expected `host_key_fingerprint` confirms it as soon as the worker sees it). The web process never
    connects to the Git host. Every problem of the input is reported at once."""
    problems = ErrorCollector()
    url = url.strip()
    _check(problems, url=url, branch=branch, sync_interval=sync_interval, conflict_strategy=conflict_strategy)
    _check(problems, path=path, revision=revision)
    if Repository.objects.filter(name=name).exists():
        problems.add("name", f"A repository named '{name}' is already connected.")
    keys = _keys(problems, name=name, auth_method=auth_method, private_key=private_key)
    host_key = None
    if known_hosts.strip() and "url" not in problems.errors:
        remote = parse_url(url)
        try:
            host_key = sshkeys.host_key_from_text(known_hosts, host_name=known_hosts_name(remote.host, remote.port))
        except sshkeys.KeyError_ as exc:
            problems.add("known_hosts", str(exc))
    problems.raise_if_any()
    repo = Repository(
        name=name,
        url=url,
        branch=branch,
        path=path.strip("/"),
        revision=revision,
        prune=prune,
        sync_interval=sync_interval,
        conflict_strategy=conflict_strategy,
        auth_method=auth_method,
        private_key_encrypted=crypto.encrypt(keys[0]),
        public_key=keys[1],
        created_by=actor_user(actor),
        expected_host_key_fingerprint=host_key_fingerprint.strip(),
    )
    if host_key is not None:
        _pin(repo, host_key)
    else:
        repo.host_key_scan = HostKeyScan.PENDING
    repo.full_clean(exclude=["private_key_encrypted", "public_key"])
    repo.save()
    audit_log(
        actor=actor,
        action="gitops.repository.connect",
        obj=repo,
        details={"url": repo.url, "branch": branch, "path": repo.path, "auth_method": auth_method},
    )
    if repo.host_key:
        enqueue_sync(repo.pk)
    else:
        _enqueue_scan(repo.pk)
    return repo


def _enqueue_scan(repository_id: int) -> None:
    from ..tasks import scan_host_key

    enqueue(scan_host_key, repository_id)


def _pin(repo: Repository, key) -> None:
    repo.host_key, repo.host_key_fingerprint = sshkeys.host_key_text(key), sshkeys.fingerprint(key)
    repo.pending_host_key = repo.pending_host_key_fingerprint = ""
    repo.host_key_scan, repo.host_key_scan_error, repo.expected_host_key_fingerprint = HostKeyScan.IDLE, "", ""
    if repo.status == RepositoryStatus.AWAITING_HOST_KEY:
        repo.status = RepositoryStatus.NEVER_SYNCED
    repo.next_sync_at = timezone.now()
    repo.failure_count = 0


def repository_host_key_scan(*, repository_id: int) -> Repository | None:
    """Worker: fetch the server's host key for an admin to confirm. A failure of any kind records the
    same "could not reach" (see transport.unreachable); an expected fingerprint that matches pins it."""
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None:
        return None
    remote = parse_url(repo.url)
    started = time.monotonic()
    try:
        key = fetch_host_key(remote.host, remote.port)
    except RemoteError as exc:
        # A refused port answers at once, a silent one after the timeout: waiting the timeout out
        # either way keeps the moment of the answer from telling them apart (no port scanning).
        time.sleep(max(0.0, transport.CONNECT_TIMEOUT - (time.monotonic() - started)))
        Repository.objects.filter(pk=repo.pk).update(host_key_scan=HostKeyScan.FAILED, host_key_scan_error=str(exc))
        return Repository.objects.get(pk=repo.pk)
    with transaction.atomic():
        repo = Repository.objects.select_for_update().get(pk=repository_id)
        repo.pending_host_key, repo.pending_host_key_fingerprint = sshkeys.host_key_text(key), sshkeys.fingerprint(key)
        repo.host_key_scan, repo.host_key_scan_error = HostKeyScan.READY, ""
        expected = repo.expected_host_key_fingerprint
        if expected and expected == repo.pending_host_key_fingerprint:
            _pin(repo, key)
            audit_log(
                actor=None, action="gitops.repository.host_key_confirm", obj=repo, details={"fingerprint": expected}
            )
            enqueue_sync(repo.pk)
        elif expected:
            repo.host_key_scan = HostKeyScan.FAILED
            repo.host_key_scan_error = (
                f"The server presented host key {repo.pending_host_key_fingerprint}, not the expected {expected}: "
                "refusing to trust it."
            )
        repo.save()
    return repo


@transaction.atomic
def repository_host_key_fetch(*, actor, repository: Repository) -> Repository:
    """Ask a worker to fetch the server's current host key (first pin, or re-pin after a change)."""
    Repository.objects.filter(pk=repository.pk).update(host_key_scan=HostKeyScan.PENDING, host_key_scan_error="")
    repository.refresh_from_db()
    audit_log(actor=actor, action="gitops.repository.host_key_fetch", obj=repository)
    _enqueue_scan(repository.pk)
    return repository


@transaction.atomic
def repository_host_key_confirm(*, actor, repository: Repository, fingerprint: str) -> Repository:
    """Pin the fetched host key, if `fingerprint` is the one the admin was shown."""
    repository = Repository.objects.select_for_update().get(pk=repository.pk)
    if not repository.pending_host_key:
        raise ConflictError("There is no fetched host key waiting for confirmation.")
    if fingerprint.strip() != repository.pending_host_key_fingerprint:
        raise ApplicationError(
            f"The fingerprint does not match the fetched host key ({repository.pending_host_key_fingerprint}).",
            field="fingerprint",
        )
    before = repository.host_key_fingerprint
    _pin(repository, sshkeys.host_key_from_text(repository.pending_host_key))
    repository.save()
    audit_log(
        actor=actor,
        action="gitops.repository.host_key_confirm",
        obj=repository,
        details={"fingerprint": repository.host_key_fingerprint, "previous": before or None},
    )
    enqueue_sync(repository.pk)
    return repository


UPDATABLE = ("branch", "sync_interval", "conflict_strategy", "path", "revision", "prune")


@transaction.atomic
def repository_update(*, actor, repository: Repository, **changes) -> Repository:
    """Change branch, interval, strategy, sub-directory, pinned revision or pruning. A new branch, path or
    revision is read from scratch at the next sync, which is due at once. Leaving `manual` supersedes the
    repository's open conflicts (status superseded, `outcome` says why): the new strategy decides those
    keys then."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ApplicationError(f"These cannot be changed: {', '.join(sorted(unknown))}.")
    problems = ErrorCollector()
    _check(problems, **changes)
    problems.raise_if_any()
    repository = Repository.objects.select_for_update().get(pk=repository.pk)
    if "path" in changes:
        changes["path"] = changes["path"].strip("/")
    before = {k: getattr(repository, k) for k in changes}
    moved = any(changes[k] != before[k] for k in ("branch", "path", "revision") if k in changes)
    for key, value in changes.items():
        setattr(repository, key, value)
    if moved:
        # The commit in force stays recorded; the next sync reads the new source from scratch.
        repository.head_sha = ""
        if repository.status == RepositoryStatus.INVALID:
            repository.status = RepositoryStatus.NEVER_SYNCED
    closed = 0
    leaving_manual = before.get("conflict_strategy") == ConflictStrategy.MANUAL != repository.conflict_strategy
    if leaving_manual:
        # Leaving manual: the open conflicts are the new strategy's to decide, at the sync due now (an
        # admin who switches to git_wins to get out of a pause means exactly that).
        closed = repository.conflicts.filter(status=ConflictStatus.OPEN).update(
            status=ConflictStatus.SUPERSEDED,
            outcome=f"closed when the strategy changed to {repository.conflict_strategy} by {actor_label(actor)}",
            resolved_at=timezone.now(),
            resolved_by=actor_user(actor),
        )
    repository.next_sync_at = timezone.now() if repository.host_key else None
    repository.save()
    details = {"before": before, **changes, **({"conflicts_closed": closed} if closed else {})}
    audit_log(actor=actor, action="gitops.repository.update", obj=repository, details=details)
    if closed:
        enqueue_sync(repository.pk, trigger="strategy changed")
    return repository


@transaction.atomic
def repository_delete(*, actor, repository: Repository, entries: str = DisconnectMode.KEEP) -> int:
    """Disconnect. Its desired-configuration entries are kept as panel-owned (Git no longer manages
    them: no base, no owner) or removed (with `prune` on, their setting keys are unset on instances).
    Returns how many entries were kept or removed."""
    from .store import entries_release

    if entries not in DisconnectMode.values:
        raise ApplicationError(f"Use one of {', '.join(DisconnectMode.values)}.", field="entries")
    count = entries_release(actor=actor, repository=repository, remove=entries == DisconnectMode.REMOVE)
    audit_log(
        actor=actor,
        action="gitops.repository.delete",
        obj=repository,
        details={"url": repository.url, "entries": entries, "count": count},
    )
    mirror = mirror_path(repository)
    repository.delete()
    transaction.on_commit(lambda: shutil.rmtree(mirror, ignore_errors=True))
    return count


def repository_private_key(repository: Repository) -> str:
    """The decrypted private key, for the SSH connection only. Never log or return it."""
    return crypto.decrypt(repository.private_key_encrypted)


@transaction.atomic
def repository_webhook_secret_rotate(*, actor, repository: Repository) -> str:
    """A new webhook secret for the repository; returned this once, stored encrypted, never shown again.
    The previous secret stops working at once."""
    secret = secrets.token_urlsafe(32)
    Repository.objects.filter(pk=repository.pk).update(webhook_secret_encrypted=crypto.encrypt(secret))
    repository.refresh_from_db()
    audit_log(actor=actor, action="gitops.repository.webhook_secret", obj=repository)
    return secret


@transaction.atomic
def repositories_rotate_keys(*, actor=None) -> int:
    """Re-encrypt every stored private key and webhook secret with the first key in FERNET_KEYS."""
    count = 0
    for repo in Repository.objects.select_for_update().only("pk", "private_key_encrypted", "webhook_secret_encrypted"):
        fields = {"private_key_encrypted": crypto.rotate(repo.private_key_encrypted)}
        if repo.webhook_secret_encrypted:
            fields["webhook_secret_encrypted"] = crypto.rotate(repo.webhook_secret_encrypted)
        Repository.objects.filter(pk=repo.pk).update(**fields)
        count += 1
    audit_log(actor=actor, action="gitops.keys.rotate", details={"repositories": count})
    return count


def _require_syncable(repository: Repository) -> None:
    if not repository.host_key:
        raise ConflictError("Confirm the repository's SSH host key before syncing.")
    open_conflicts = repository.conflicts.filter(status=ConflictStatus.OPEN).count()
    if open_conflicts:
        raise ConflictError(
            f"The sync is paused: resolve the {open_conflicts} open conflict(s) first, "
            "or switch the repository to another conflict strategy."
        )


@transaction.atomic
def repository_sync_request(*, actor, repository: Repository, trigger: str = "") -> Repository:
    """Force a sync now (operators and admins): queued for a worker, which records a SyncRun."""
    _require_syncable(repository)
    Repository.objects.filter(pk=repository.pk).update(next_sync_at=timezone.now())
    audit_log(actor=actor, action="gitops.repository.sync_request", obj=repository)
    enqueue_sync(repository.pk, trigger=trigger or f"manual:{getattr(actor, 'username', actor)}")
    return repository


@transaction.atomic
def repository_sync_to_revision(*, actor, repository: Repository, revision: str) -> Repository:
    """Roll the fleet to an earlier commit's (or a tag's) configuration: the repository is pinned to that
    revision (so the next scheduled sync does not bring the branch head back) and a sync of it is queued,
    recorded as its own run. Clear the pinned revision to follow the branch again."""
    revision = revision.strip()
    if not revision:
        raise ApplicationError("Name the tag or commit to sync to.", field="revision")
    if problem := revision_problem(revision):
        raise ApplicationError(problem, field="revision")
    _require_syncable(repository)
    Repository.objects.filter(pk=repository.pk).update(revision=revision, next_sync_at=timezone.now())
    repository.refresh_from_db()
    audit_log(actor=actor, action="gitops.repository.sync_to_revision", obj=repository, details={"revision": revision})
    enqueue_sync(repository.pk, trigger="revision", revision=revision)
    return repository


@transaction.atomic
def repository_preview_request(*, actor, repository: Repository) -> SyncRun:
    """Queue a preview: a worker fetches, validates and records what a sync would do, applying nothing.
    The returned run (dry_run) is where the answer appears."""
    from ..tasks import preview_repository

    if not repository.host_key:
        raise ConflictError("Confirm the repository's SSH host key before previewing.")
    run = SyncRun.objects.create(
        repository=repository,
        dry_run=True,
        trigger=f"preview:{getattr(actor, 'username', actor)}"[:32],
        revision=repository.revision,
    )
    audit_log(actor=actor, action="gitops.repository.preview", obj=repository, details={"run": run.pk})
    enqueue(preview_repository, run.pk)
    return run


def repositories_due(*, now=None) -> list[int]:
    """Repositories whose next sync is due, with a pinned host key and no sync running."""
    now = now or timezone.now()
    return list(
        Repository.objects.filter(next_sync_at__lte=now)
        .exclude(host_key="")
        .filter(Q(sync_started_at__isnull=True) | Q(sync_started_at__lt=now - STALE_CLAIM))
        .order_by("next_sync_at")
        .values_list("pk", flat=True)
    )


def repository_is_busy(repository_id: int) -> bool:
    """Does a live sync or preview hold the repository's claim?"""
    cutoff = timezone.now() - STALE_CLAIM
    return Repository.objects.filter(pk=repository_id, sync_started_at__gte=cutoff).exists()
