"""Every GitOps write: connecting repositories, syncing, the desired-configuration store, conflicts."""

import json
import logging
import shutil
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.choices import NotificationLevel
from common.exceptions import ApplicationError, ConflictError
from common.services import audit_log, notify_admins
from fleet.choices import CommandSource, RunStatus, ScopeKind
from fleet.models import CommandRun, Group, Instance
from fleet.scopes import Scope, ScopeError, parse_tag
from fleet.selectors import instance_memberships, instances_in_scope
from fleet.services import CommandSpec, command_create_many

from . import crypto, sshkeys
from .choices import (
    AuthMethod,
    ConflictStatus,
    ConflictStrategy,
    Level,
    RepositoryStatus,
    Resolution,
    SyncStatus,
)
from .models import Conflict, DesiredEntry, Repository, SyncRun
from .reconcile import EntryIndex, StoreState, merge, plan_commands, same
from .repoformat import CommitInvalid, is_config_path, parse_commit, validate_value
from .transport import GitRemote, RemoteError, parse_url, read_tree

logger = logging.getLogger(__name__)

MIN_INTERVAL = 30
MAX_BACKOFF = 6 * 3600
# A claim older than this belongs to a worker that died mid-sync.
STALE_CLAIM = timedelta(seconds=getattr(settings, "CELERY_TASK_TIME_LIMIT", 300) + 60)


def mirror_path(repository: Repository) -> Path:
    return Path(settings.VAR_DIR) / "gitops" / f"repository-{repository.pk}.git"


def _user(actor):
    return actor if getattr(actor, "pk", None) else None


# --- Repositories -----------------------------------------------------------------------------


def _check_settings(*, url: str, branch: str, sync_interval: int, conflict_strategy: str):
    try:
        parse_url(url)
    except ValueError as exc:
        raise ApplicationError(str(exc), field="url") from exc
    if not branch or branch.startswith("-") or " " in branch or ".." in branch:
        raise ApplicationError(f"'{branch}' is not a branch name.", field="branch")
    if sync_interval < MIN_INTERVAL:
        raise ApplicationError(f"The sync interval must be at least {MIN_INTERVAL} seconds.", field="sync_interval")
    if conflict_strategy not in ConflictStrategy.values:
        raise ApplicationError(
            f"Unknown conflict strategy '{conflict_strategy}': use {', '.join(ConflictStrategy.values)}.",
            field="conflict_strategy",
        )


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
) -> Repository:
    """Connect a repository. The host key is pinned from a pasted known_hosts line, or fetched from the
    server and held until an admin confirms its fingerprint (passing the expected `host_key_fingerprint`
    confirms it at once). Nothing is synced before a host key is pinned."""
    _check_settings(url=url, branch=branch, sync_interval=sync_interval, conflict_strategy=conflict_strategy)
    if Repository.objects.filter(name=name).exists():
        raise ApplicationError(f"A repository named '{name}' is already connected.", field="name")
    if auth_method == AuthMethod.GENERATED:
        private, public = sshkeys.generate_keypair(comment=f"fleet-gitops-{name}")
    elif auth_method == AuthMethod.UPLOADED:
        try:
            pkey = sshkeys.load_private_key(private_key)
        except sshkeys.KeyError_ as exc:
            raise ApplicationError(str(exc), field="private_key") from exc
        private, public = private_key.strip() + "\n", sshkeys.public_key_line(pkey, comment=f"fleet-gitops-{name}")
    else:
        raise ApplicationError(f"Unknown authentication method '{auth_method}'.", field="auth_method")
    repo = Repository(
        name=name,
        url=url.strip(),
        branch=branch,
        sync_interval=sync_interval,
        conflict_strategy=conflict_strategy,
        auth_method=auth_method,
        private_key_encrypted=crypto.encrypt(private),
        public_key=public,
        created_by=_user(actor),
    )
    if known_hosts.strip():
        try:
            key = sshkeys.host_key_from_text(known_hosts)
        except sshkeys.KeyError_ as exc:
            raise ApplicationError(str(exc), field="known_hosts") from exc
        _pin(repo, key)
    else:
        remote = parse_url(url)
        try:
            key = sshkeys.fetch_host_key(remote.host, remote.port)
        except ConnectionError as exc:
            raise ApplicationError(
                f"{exc}. Check the URL, or paste the server's known_hosts line instead.", field="url"
            ) from exc
        repo.pending_host_key, repo.pending_host_key_fingerprint = sshkeys.host_key_text(key), sshkeys.fingerprint(key)
        if host_key_fingerprint:
            if host_key_fingerprint.strip() != repo.pending_host_key_fingerprint:
                raise ApplicationError(
                    f"The server presented host key {repo.pending_host_key_fingerprint}, not {host_key_fingerprint.strip()}: "
                    "refusing to trust it.",
                    field="host_key_fingerprint",
                )
            _pin(repo, key)
    repo.full_clean(exclude=["private_key_encrypted", "public_key"])
    repo.save()
    audit_log(
        actor=actor,
        action="gitops.repository.connect",
        obj=repo,
        details={
            "url": repo.url,
            "branch": branch,
            "auth_method": auth_method,
            "host_key": repo.host_key_fingerprint or None,
        },
    )
    if repo.host_key:
        _enqueue_sync(repo.pk)
    return repo


def _pin(repo: Repository, key) -> None:
    repo.host_key, repo.host_key_fingerprint = sshkeys.host_key_text(key), sshkeys.fingerprint(key)
    repo.pending_host_key = repo.pending_host_key_fingerprint = ""
    if repo.status == RepositoryStatus.AWAITING_HOST_KEY:
        repo.status = RepositoryStatus.NEVER_SYNCED
    repo.next_sync_at = timezone.now()
    repo.failure_count = 0


@transaction.atomic
def repository_host_key_fetch(*, actor, repository: Repository) -> Repository:
    """Fetch the server's current host key for an admin to confirm (first pin, or re-pin after a change)."""
    remote = parse_url(repository.url)
    try:
        key = sshkeys.fetch_host_key(remote.host, remote.port)
    except ConnectionError as exc:
        raise ApplicationError(str(exc)) from exc
    repository.pending_host_key, repository.pending_host_key_fingerprint = (
        sshkeys.host_key_text(key),
        sshkeys.fingerprint(key),
    )
    repository.save(update_fields=["pending_host_key", "pending_host_key_fingerprint"])
    audit_log(
        actor=actor,
        action="gitops.repository.host_key_fetch",
        obj=repository,
        details={"fingerprint": repository.pending_host_key_fingerprint},
    )
    return repository


@transaction.atomic
def repository_host_key_confirm(*, actor, repository: Repository, fingerprint: str) -> Repository:
    """Pin the fetched host key, if `fingerprint` is the one the admin was shown."""
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
    _enqueue_sync(repository.pk)
    return repository


@transaction.atomic
def repository_update(
    *, actor, repository: Repository, branch: str, sync_interval: int, conflict_strategy: str
) -> Repository:
    _check_settings(url=repository.url, branch=branch, sync_interval=sync_interval, conflict_strategy=conflict_strategy)
    before = {
        "branch": repository.branch,
        "sync_interval": repository.sync_interval,
        "conflict_strategy": repository.conflict_strategy,
    }
    if branch != repository.branch:
        repository.head_sha = repository.last_commit_sha = ""
    repository.branch, repository.sync_interval, repository.conflict_strategy = branch, sync_interval, conflict_strategy
    repository.next_sync_at = timezone.now() if repository.host_key else None
    repository.save()
    audit_log(
        actor=actor,
        action="gitops.repository.update",
        obj=repository,
        details={
            "before": before,
            "branch": branch,
            "sync_interval": sync_interval,
            "conflict_strategy": conflict_strategy,
        },
    )
    return repository


@transaction.atomic
def repository_delete(*, actor, repository: Repository) -> None:
    """Disconnect: the repository, its runs and conflicts go; its desired-configuration entries stay."""
    audit_log(actor=actor, action="gitops.repository.delete", obj=repository, details={"url": repository.url})
    mirror = mirror_path(repository)
    repository.delete()
    transaction.on_commit(lambda: shutil.rmtree(mirror, ignore_errors=True))


def repository_private_key(repository: Repository) -> str:
    """The decrypted private key, for the SSH connection only. Never log or return it."""
    return crypto.decrypt(repository.private_key_encrypted)


@transaction.atomic
def repositories_rotate_keys(*, actor=None) -> int:
    """Re-encrypt every stored private key with the first key in FERNET_KEYS. Returns how many."""
    count = 0
    for repo in Repository.objects.select_for_update().only("pk", "name", "private_key_encrypted"):
        Repository.objects.filter(pk=repo.pk).update(private_key_encrypted=crypto.rotate(repo.private_key_encrypted))
        count += 1
    audit_log(actor=actor, action="gitops.keys.rotate", details={"repositories": count})
    return count


def _enqueue_sync(repository_id: int, trigger: str = "schedule") -> None:
    from .tasks import sync_repository

    transaction.on_commit(lambda: sync_repository.delay(repository_id, trigger))


@transaction.atomic
def repository_sync_request(*, actor, repository: Repository) -> Repository:
    """Force a sync now (operators and admins): queued for a worker, which records a SyncRun."""
    if not repository.host_key:
        raise ConflictError("Confirm the repository's SSH host key before syncing.")
    open_conflicts = repository.conflicts.filter(status=ConflictStatus.OPEN).count()
    if open_conflicts:
        raise ConflictError(f"The sync is paused: resolve the {open_conflicts} open conflict(s) first.")
    Repository.objects.filter(pk=repository.pk).update(next_sync_at=timezone.now())
    audit_log(actor=actor, action="gitops.repository.sync_request", obj=repository)
    _enqueue_sync(repository.pk, trigger=f"manual:{getattr(actor, 'username', actor)}")
    return repository


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


# --- Sync ---------------------------------------------------------------------------------------


class _Log:
    def __init__(self):
        self.lines, self.t0 = [], time.monotonic()

    def __call__(self, message: str):
        self.lines.append(f"[{time.monotonic() - self.t0:7.3f}s] {message}")

    def text(self) -> str:
        return "\n".join(self.lines)


def repository_sync(*, repository_id: int, trigger: str = "schedule", actor=None) -> SyncRun | None:
    """Sync one repository. Returns the recorded run, or None when another sync holds the claim.

    1. Claim the repository with a conditional UPDATE (one sync per repository at a time).
    2. Paused on open conflicts → record a paused run, fetch nothing.
    3. ls-remote the branch; the head already handled → a no-op run (no objects fetched).
    4. Fetch into the local mirror, read and validate the WHOLE commit; invalid → nothing applied.
    5. Three-way merge into the store by the conflict strategy; manual conflicts → pause, nothing applied.
    6. Apply the store changes and queue the commands that drive the fleet, in one transaction.
    A remote failure backs off exponentially (and notifies admins the first time).
    """
    now = timezone.now()
    claimed = (
        Repository.objects.filter(pk=repository_id)
        .exclude(host_key="")
        .filter(Q(sync_started_at__isnull=True) | Q(sync_started_at__lt=now - STALE_CLAIM))
        .update(sync_started_at=now)
    )
    if not claimed:
        return None
    repo = Repository.objects.get(pk=repository_id)
    run = SyncRun.objects.create(repository=repo, trigger=trigger[:32])
    log = _Log()
    try:
        _sync(repo, run, log, actor, trigger)
    except Exception as exc:  # record every failure on the run; the claim must be released
        logger.exception("GitOps sync of repository %s crashed", repo.pk)
        _finish(
            repo, run, log, SyncStatus.FAILED, errors=[f"Internal error: {exc.__class__.__name__}: {exc}"], backoff=True
        )
    return run


def _finish(repo, run, log, status, *, errors=(), backoff=False, repo_status=None, **repo_fields):
    now = timezone.now()
    run.status, run.finished_at, run.errors = status, now, list(errors)
    if errors:
        for e in errors[:20]:
            log(f"error: {e}")
    run.log = log.text()
    run.save()
    fields = {"sync_started_at": None, "last_sync_at": now, **repo_fields}
    if backoff:
        failures = repo.failure_count + 1
        delay = min(max(MIN_INTERVAL, repo.sync_interval) * 2 ** (failures - 1), MAX_BACKOFF)
        fields.update(
            failure_count=failures,
            next_sync_at=now + timedelta(seconds=delay),
            status=RepositoryStatus.ERROR,
            last_error="; ".join(errors)[:4000],
        )
        if failures == 1:
            notify_admins(
                title=f"GitOps: cannot sync {repo.name}",
                body="; ".join(errors)[:2000],
                url=repo.get_absolute_url(),
                level=NotificationLevel.WARNING,
            )
    else:
        fields.setdefault("failure_count", 0)
        fields.setdefault("next_sync_at", now + timedelta(seconds=repo.sync_interval))
        if repo_status:
            fields["status"] = repo_status
    Repository.objects.filter(pk=repo.pk).update(**fields)
    for key, value in fields.items():
        setattr(repo, key, value)
    level = logging.WARNING if errors else logging.INFO
    logger.log(
        level,
        "GitOps sync of %s (run %s): %s%s",
        repo.name,
        run.pk,
        status,
        f" — {'; '.join(errors)[:500]}" if errors else "",
    )


def _sync(repo: Repository, run: SyncRun, log: _Log, actor, trigger: str) -> None:
    open_conflicts = repo.conflicts.filter(status=ConflictStatus.OPEN).count()
    if open_conflicts:
        log(f"{open_conflicts} open conflict(s): the sync stays paused until an admin resolves them")
        _finish(repo, run, log, SyncStatus.PAUSED, repo_status=RepositoryStatus.PAUSED, next_sync_at=None)
        return
    try:
        remote = GitRemote(
            url=repo.url,
            host_key=sshkeys.host_key_from_text(repo.host_key),
            pkey=sshkeys.load_private_key(repository_private_key(repo)),
        )
        log(f"ls-remote {repo.branch}")
        head = remote.head(repo.branch)
    except (RemoteError, crypto.SecretUnreadable, sshkeys.KeyError_, ValueError) as exc:
        _finish(repo, run, log, SyncStatus.FAILED, errors=[str(exc)], backoff=True)
        return
    run.commit_sha = head
    log(f"branch {repo.branch} is at {head}")
    # A forced sync re-validates an invalid head (the fleet may have gained the missing group since).
    handled = repo.status == RepositoryStatus.OK or (
        repo.status == RepositoryStatus.INVALID and not trigger.startswith("manual")
    )
    if head == repo.head_sha and handled:
        log("commit already handled: nothing to do")
        status = SyncStatus.NOOP if repo.status == RepositoryStatus.OK else SyncStatus.INVALID
        errors = [repo.last_error] if status == SyncStatus.INVALID and repo.last_error else []
        _finish(repo, run, log, status, errors=errors, repo_status=repo.status)
        return
    try:
        mirror = mirror_path(repo)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        remote.fetch(repo.branch, mirror)
        log("fetched")
        files = read_tree(mirror, head, is_config_path)
    except RemoteError as exc:
        _finish(repo, run, log, SyncStatus.FAILED, errors=[str(exc)], backoff=True)
        return
    log(f"read {len(files)} configuration file(s)")
    try:
        desired = parse_commit(
            files,
            groups=set(Group.objects.values_list("name", flat=True)),
            instances=set(Instance.objects.values_list("name", flat=True)),
        )
    except CommitInvalid as exc:
        errors = [str(i) for i in exc.issues]
        log(f"commit {head[:12]} is invalid: nothing applied, the last good state stays in force")
        if head != repo.head_sha:
            notify_admins(
                title=f"GitOps: commit {head[:12]} of {repo.name} is invalid",
                body="\n".join(errors[:20]),
                url=repo.get_absolute_url(),
                level=NotificationLevel.WARNING,
            )
        _finish(
            repo,
            run,
            log,
            SyncStatus.INVALID,
            errors=errors,
            repo_status=RepositoryStatus.INVALID,
            head_sha=head,
            last_error=f"Commit {head[:12]} is invalid: " + "; ".join(errors[:5]),
        )
        return
    log(f"commit valid: {len(desired)} key(s)")
    _apply(repo, run, log, head, desired, actor)


@transaction.atomic
def _apply(repo, run, log, head, desired, actor) -> None:
    entries = {(e.level, e.target, e.key): e for e in DesiredEntry.objects.select_for_update()}
    store = {k: StoreState(e.present, e.value, e.in_git, e.git_base) for k, e in entries.items()}
    result = merge(store, desired, repo.conflict_strategy)
    for item in result.drift:
        log(
            f"drift kept ({repo.conflict_strategy}): {item['level']} {item['target']} {item['key']}: panel {item['panel']!r}, Git {item['git']!r}"
        )
    if result.conflicts:
        for c in result.conflicts:
            level, target, key = c.pop("key")
            Conflict.objects.update_or_create(
                repository=repo,
                level=level,
                target=target,
                key=key,
                status=ConflictStatus.OPEN,
                defaults={**c, "run": run, "commit_sha": head},
            )
        run.conflicts_opened = len(result.conflicts)
        log(f"{len(result.conflicts)} conflict(s) between Git and the panel: sync paused, nothing applied")
        notify_admins(
            title=f"GitOps: {len(result.conflicts)} conflict(s) in {repo.name}",
            body="An admin must choose which values to keep before the sync continues.",
            url=repo.get_absolute_url(),
            level=NotificationLevel.WARNING,
        )
        _finish(
            repo, run, log, SyncStatus.PAUSED, repo_status=RepositoryStatus.PAUSED, head_sha=head, next_sync_at=None
        )
        return
    now = timezone.now()
    creates, updates, deletes = [], [], []
    for key, state in result.writes.items():
        entry = entries.get(key)
        if state is None:
            if entry is not None:
                deletes.append(entry.pk)
            continue
        if entry is None:
            entry = DesiredEntry(level=key[0], target=key[1], key=key[2])
            creates.append(entry)
        else:
            updates.append(entry)
        entry.present, entry.value, entry.in_git, entry.git_base = (
            state.present,
            state.value,
            state.in_git,
            state.git_base,
        )
        entry.repository, entry.git_synced_at = repo, now
    DesiredEntry.objects.filter(pk__in=deletes).delete()
    DesiredEntry.objects.bulk_create(creates, batch_size=2000)
    DesiredEntry.objects.bulk_update(
        updates, ["present", "value", "in_git", "git_base", "repository", "git_synced_at", "updated"], batch_size=2000
    )
    run.changes = result.changes
    log(f"store: {len(creates)} added, {len(updates)} changed, {len(deletes)} removed")
    commands = desired_config_drive(
        actor=actor or f"gitops:{repo.name}", description=f"GitOps {repo.name} @ {head[:12]}"
    )
    run.commands = commands
    run.commands_issued = len(commands)
    log(f"{len(commands)} command(s) queued for {sum(c['instance_count'] for c in commands)} instance run(s)")
    audit_log(
        actor=actor or f"gitops:{repo.name}",
        action="gitops.repository.sync",
        obj=repo,
        details={"commit": head, "changes": len(result.changes), "commands": len(commands)},
    )
    _finish(
        repo,
        run,
        log,
        SyncStatus.APPLIED,
        repo_status=RepositoryStatus.OK,
        head_sha=head,
        last_commit_sha=head,
        last_success_at=timezone.now(),
        last_error="",
    )


# --- Driving the fleet ----------------------------------------------------------------------------


def _pending_gitops_commands(instance_ids=None) -> set[tuple[int, str, str]]:
    qs = CommandRun.objects.filter(
        status__in=(RunStatus.PENDING, RunStatus.RUNNING), command__source=CommandSource.GITOPS
    )
    if instance_ids is not None:
        qs = qs.filter(instance_id__in=instance_ids)
    return {
        (iid, kind, json.dumps(params, sort_keys=True))
        for iid, kind, params in qs.values_list("instance_id", "command__kind", "command__params")
    }


@transaction.atomic
def desired_config_drive(*, actor, instance_ids=None, description: str = "GitOps desired configuration") -> list[dict]:
    """Queue the commands that move instances' reported state to their effective desired configuration.

    Instances with the same change get one command; a change already pending or running for an
    instance (from an earlier sync) is not queued twice. Returns what was queued.
    """
    rows = DesiredEntry.objects.filter(present=True).values_list("level", "target", "key", "value")
    index = EntryIndex(rows)
    if not any(index.by_level.values()):
        return []
    # Everything Instance.state reads, so that no deferred field is loaded one instance at a time.
    instances = Instance.objects.only("pk", "name", "apps", "settings", "os_version", "updates")
    if instance_ids is not None:
        instances = instances.filter(pk__in=instance_ids)
    memberships = instance_memberships(instance_ids)
    group_names = dict(Group.objects.values_list("pk", "name"))
    pending = _pending_gitops_commands(instance_ids)
    batches: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for inst in instances:
        group_ids, tags = memberships.get(inst.pk, ((), ()))
        effective = index.effective(name=inst.name, groups=[group_names[g] for g in group_ids], tags=tags)
        if not effective:
            continue
        desired = {key: value for key, (value, _source) in effective.items()}
        for kind, params in plan_commands(desired, inst.state):
            signature = json.dumps(params, sort_keys=True)
            if (inst.pk, kind, signature) not in pending:
                batches[(kind, signature)].append(inst)
    specs, queued = [], []
    for (kind, signature), targets in sorted(batches.items()):
        params = json.loads(signature)
        specs.append(
            CommandSpec(
                kind=kind,
                params=params,
                source=CommandSource.GITOPS,
                description=description[:200],
                scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=tuple(sorted(i.pk for i in targets))),
                instances=tuple(targets),
            )
        )
        queued.append(
            {
                "kind": kind,
                "params": params,
                "instances": [i.name for i in targets][:50],
                "instance_count": len(targets),
            }
        )
    # One batch of INSERTs for every command of the sync (hundreds of per-instance set_config changes).
    for entry, command in zip(queued, command_create_many(actor=actor, specs=specs), strict=True):
        entry["command_id"] = command.pk
    return queued


def instance_reconcile(*, instance_id: int) -> list[dict]:
    """An instance's reported state changed (or it just registered): drive it to its desired config."""
    if not DesiredEntry.objects.filter(present=True).exists():
        return []
    return desired_config_drive(actor="gitops", instance_ids=[instance_id])


# --- The desired-configuration store ------------------------------------------------------------


def _check_target(level: str, target: str) -> str:
    if level not in Level.values:
        raise ApplicationError(f"Unknown level '{level}': use {', '.join(Level.values)}.", field="level")
    target = (target or "").strip()
    if level == Level.FLEET:
        return ""
    if not target:
        raise ApplicationError(f"Name the {level} this entry applies to.", field="target")
    if level == Level.GROUP and not Group.objects.filter(name=target).exists():
        raise ApplicationError(f"There is no group named '{target}'.", field="target")
    if level == Level.INSTANCE and not Instance.objects.filter(name=target).exists():
        raise ApplicationError(f"There is no instance named '{target}'.", field="target")
    if level == Level.TAG:
        try:
            key, value = parse_tag(target)
        except ScopeError as exc:
            raise ApplicationError(str(exc), field="target") from exc
        target = f"{key}={value}"
    return target


@transaction.atomic
def desired_entry_set(*, actor, level: str, target: str, key: str, value) -> DesiredEntry:
    """Set a key at a level from the panel (UI or API) and queue the commands it implies."""
    target = _check_target(level, target)
    try:
        key, value = validate_value(key, value)
    except ValueError as exc:
        raise ApplicationError(str(exc), field="value") from exc
    entry = DesiredEntry.objects.select_for_update().filter(level=level, target=target, key=key).first()
    before = (entry.present, entry.value) if entry else (False, None)
    if entry is None:
        entry = DesiredEntry(level=level, target=target, key=key)
    if before[0] and same(before[1], value):
        return entry
    entry.value, entry.present = value, True
    entry.panel_changed_at, entry.panel_changed_by = timezone.now(), _user(actor)
    entry.save()
    audit_log(
        actor=actor,
        action="gitops.entry.set",
        obj=entry,
        details={
            "level": level,
            "target": target,
            "key": key,
            "before": before[1] if before[0] else None,
            "after": value,
        },
    )
    desired_config_drive(
        actor=actor, instance_ids=_affected_instances(level, target), description=f"Desired config: {entry}"
    )
    return entry


def _affected_instances(level: str, target: str) -> list[int] | None:
    """Instances an entry at this level can affect (None: the whole fleet)."""
    if level == Level.FLEET:
        return None
    if level == Level.GROUP:
        scope = Scope(
            kind=ScopeKind.GROUPS, group_ids=tuple(Group.objects.filter(name=target).values_list("pk", flat=True))
        )
    elif level == Level.TAG:
        scope = Scope(kind=ScopeKind.TAGS, tags=(target,))
    else:
        return list(Instance.objects.filter(name=target).values_list("pk", flat=True))
    return list(instances_in_scope(scope).values_list("pk", flat=True))


@transaction.atomic
def desired_entry_delete(*, actor, entry: DesiredEntry) -> None:
    """Remove a key from the panel. A key Git manages stays as a tombstone, so the removal is drift."""
    audit_log(
        actor=actor, action="gitops.entry.delete", obj=entry, details={"value": entry.value if entry.present else None}
    )
    if entry.in_git:
        entry.present, entry.value = False, None
        entry.panel_changed_at, entry.panel_changed_by = timezone.now(), _user(actor)
        entry.save()
    else:
        entry.delete()


# --- Conflicts ----------------------------------------------------------------------------------


@transaction.atomic
def conflict_resolve(*, actor, conflict: Conflict, resolution: str, value=None) -> Conflict:
    """An admin decides a manual conflict: keep the panel value, take Git's, or set another value.

    The store takes the chosen value and Git's value becomes the base. When no conflict of the
    repository is left open, its sync continues (queued at once).
    """
    conflict = Conflict.objects.select_for_update().get(pk=conflict.pk)
    if conflict.status != ConflictStatus.OPEN:
        raise ConflictError("This conflict is already resolved.")
    if resolution == Resolution.PANEL:
        present, chosen = conflict.panel_present, conflict.panel_value
    elif resolution == Resolution.GIT:
        present, chosen = conflict.git_present, conflict.git_value
    elif resolution == Resolution.CUSTOM:
        try:
            _key, chosen = validate_value(conflict.key, value)
        except ValueError as exc:
            raise ApplicationError(str(exc), field="value") from exc
        present = True
    else:
        raise ApplicationError(
            f"Unknown resolution '{resolution}': use {', '.join(Resolution.values)}.", field="resolution"
        )
    now = timezone.now()
    entry = (
        DesiredEntry.objects.select_for_update()
        .filter(level=conflict.level, target=conflict.target, key=conflict.key)
        .first()
    )
    if entry is None:
        entry = DesiredEntry(level=conflict.level, target=conflict.target, key=conflict.key)
    entry.present, entry.value = present, chosen if present else None
    entry.in_git, entry.git_base = conflict.git_present, conflict.git_value if conflict.git_present else None
    entry.repository, entry.git_synced_at = conflict.repository, now
    if not (present == conflict.git_present and (not present or same(chosen, conflict.git_value))):
        entry.panel_changed_at, entry.panel_changed_by = now, _user(actor)
    else:  # Git's value was taken: the entry is in line with Git again, no panel change is pending
        entry.panel_changed_at, entry.panel_changed_by = None, None
    if not entry.present and not entry.in_git:
        if entry.pk:
            entry.delete()
    else:
        entry.save()
    conflict.status, conflict.resolution, conflict.resolved_value = (
        ConflictStatus.RESOLVED,
        resolution,
        chosen if present else None,
    )
    conflict.resolved_at, conflict.resolved_by = now, _user(actor)
    conflict.save()
    audit_log(
        actor=actor,
        action="gitops.conflict.resolve",
        obj=conflict,
        details={
            "repository": conflict.repository.name,
            "level": conflict.level,
            "target": conflict.target,
            "key": conflict.key,
            "resolution": resolution,
            "value": conflict.resolved_value,
            "panel": conflict.panel_value,
            "git": conflict.git_value,
            "base": conflict.base_value,
        },
    )
    repo = conflict.repository
    if not repo.conflicts.filter(status=ConflictStatus.OPEN).exists():
        Repository.objects.filter(pk=repo.pk).update(next_sync_at=now)
        _enqueue_sync(repo.pk, trigger="conflicts resolved")
    return conflict
