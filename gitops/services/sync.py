"""Syncing one repository (and previewing a sync): claim, resolve the commit, validate, plan, apply.

What serialises what: one sync or preview per repository at a time (a conditional UPDATE of
`sync_started_at` claims it); the planning and applying of every repository's sync run under a row
lock on all Repository rows, so two repositories never apply at once and each sees the other's
ownership; a panel edit locks the entry rows it changes, and the sync locks the entries it owns.
"""

import logging
import re
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.choices import NotificationLevel
from common.services import audit_log, notify_admins
from fleet.licensing_store import feature_licensed

from .. import crypto, sshkeys
from ..choices import ConflictStatus, RepositoryStatus, SyncStatus
from ..models import Repository, SyncRun
from ..repoformat import CommitInvalid, Issue
from ..transport import GitRemote, MissingDirectory, RemoteError, find_commit, peel, read_tree
from ._base import FEATURE, mirror_path
from .repositories import MIN_INTERVAL, STALE_CLAIM, repository_private_key
from .sections import SECTIONS, RunLog, SyncContext

logger = logging.getLogger("gitops.sync")

MAX_BACKOFF = 6 * 3600
_HEX = re.compile(r"^[0-9a-f]{7,40}\Z")


def _claim(repository_id: int) -> Repository | None:
    now = timezone.now()
    claimed = (
        Repository.objects.filter(pk=repository_id)
        .exclude(host_key="")
        .filter(Q(sync_started_at__isnull=True) | Q(sync_started_at__lt=now - STALE_CLAIM))
        .update(sync_started_at=now)
    )
    return Repository.objects.get(pk=repository_id) if claimed else None


def repository_sync(*, repository_id: int, trigger: str = "schedule", actor=None, revision: str = "") -> SyncRun | None:
    """Sync one repository. Returns the recorded run, or None when another sync holds the claim, the
    license lacks gitops, or the head is an invalid commit already recorded.

    1. Claim the repository (one sync or preview per repository at a time).
    2. Paused on open conflicts → a paused run; nothing is fetched.
    3. Resolve the commit: the branch head, or the pinned/requested tag or commit (an ls-remote).
    4. The commit in force → re-assert: each strategy decides again about panel edits of Git's keys
       (no objects fetched). An invalid head already recorded → nothing recorded again.
    5. Otherwise fetch into the local mirror and validate the WHOLE commit, every section; invalid, or a
       key another repository owns → nothing applied.
    6. Plan every section by the strategy; manual conflicts → pause, nothing applied.
    7. Apply every section and queue the fleet's commands, in one transaction.
    A remote failure backs off exponentially (and notifies admins the first time).
    """
    if not feature_licensed(FEATURE):
        logger.info("GitOps sync of repository %s skipped: the license does not include gitops", repository_id)
        return None
    repo = _claim(repository_id)
    if repo is None:
        return None
    run = SyncRun.objects.create(repository=repo, trigger=trigger[:32], revision=revision or repo.revision)
    return _execute(repo, run, actor)


def repository_preview(*, run_id: int) -> SyncRun | None:
    """Carry out a preview run (see repository_preview_request). None: the repository is busy, retry."""
    run = SyncRun.objects.filter(pk=run_id, dry_run=True).first()
    if run is None or run.status != SyncStatus.RUNNING:
        return run
    if not feature_licensed(FEATURE):
        run.status, run.errors, run.finished_at = (
            SyncStatus.FAILED,
            ["The license does not include gitops."],
            timezone.now(),
        )
        run.save()
        return run
    repo = _claim(run.repository_id)
    return None if repo is None else _execute(repo, run, None)


def _execute(repo: Repository, run: SyncRun, actor) -> SyncRun | None:
    ctx = SyncContext(repository=repo, run=run, log=RunLog(), actor=actor, dry_run=run.dry_run)
    try:
        _run(ctx)
    except Exception as exc:  # record every failure on the run; the claim must be released
        logger.exception("GitOps sync of repository %s crashed", repo.pk)
        _finish(ctx, SyncStatus.FAILED, errors=[f"Internal error: {exc.__class__.__name__}: {exc}"], backoff=True)
    return None if run.pk is None else run


def _finish(ctx: SyncContext, status, *, errors=(), backoff=False, repo_status=None, **repo_fields):
    repo, run, log = ctx.repository, ctx.run, ctx.log
    now = timezone.now()
    run.status, run.finished_at, run.errors, run.commit_sha = status, now, list(errors), ctx.commit
    run.changes, run.commands, run.policy_changes = ctx.changes, ctx.commands, ctx.policy_changes
    run.commands_issued = 0 if ctx.dry_run else len(ctx.commands)
    for e in list(errors)[:20]:
        log(f"error: {e}")
    run.log = log.text()
    run.save()
    fields = {"sync_started_at": None}
    if not ctx.dry_run:
        fields.update(_repository_outcome(repo, now, errors, backoff, repo_status), **repo_fields)
    Repository.objects.filter(pk=repo.pk).update(**fields)
    for key, value in fields.items():
        setattr(repo, key, value)
    summary = f" — {'; '.join(errors)[:300]}" if errors else ""
    kind = "preview" if ctx.dry_run else "sync"
    logger.log(
        logging.WARNING if errors else logging.INFO,
        "GitOps %s of %s (run %s): %s%s",
        kind,
        repo.name,
        run.pk,
        status,
        summary,
    )


def _repository_outcome(repo, now, errors, backoff, repo_status) -> dict:
    fields = {"last_sync_at": now}
    if not backoff:
        fields.update(failure_count=0, next_sync_at=now + timedelta(seconds=repo.sync_interval))
        if repo_status:
            fields["status"] = repo_status
        return fields
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
    return fields


def _remote(repo: Repository) -> GitRemote:
    return GitRemote(
        url=repo.url,
        host_key=sshkeys.host_key_from_text(repo.host_key),
        pkey=sshkeys.load_private_key(repository_private_key(repo)),
    )


def _resolve(ctx: SyncContext, remote: GitRemote) -> tuple[str, list[str]]:
    """(commit, refs to fetch when the mirror lacks it) for the branch head or the wanted revision."""
    repo, revision = ctx.repository, ctx.run.revision
    branch = f"refs/heads/{repo.branch}"
    mirror = mirror_path(repo)
    if not revision:
        ctx.log(f"ls-remote {repo.branch}")
        return remote.head(repo.branch), [branch]
    tag = f"refs/tags/{revision}"
    ctx.log(f"ls-remote {tag}")
    tag_sha = remote.ref(tag)
    if tag_sha:
        commit = peel(mirror, tag_sha)
        if commit is None:
            remote.fetch(mirror, [tag])
            commit = peel(mirror, tag_sha)
        if commit is None:
            raise RemoteError(f"The tag '{revision}' does not point to a commit.")
        return commit, [tag]
    if not _HEX.match(revision.lower()):
        raise RemoteError(f"The repository has no tag '{revision}'.")
    head = remote.head(repo.branch)
    commit = revision.lower() if len(revision) == 40 and peel(mirror, revision.lower()) else None
    if commit is None:
        remote.fetch(mirror, [branch])
        commit = find_commit(mirror, head, revision)
    if commit is None:
        raise RemoteError(f"There is no commit {revision} on branch '{repo.branch}'.")
    return commit, [branch]


def _run(ctx: SyncContext) -> None:
    repo, run, log = ctx.repository, ctx.run, ctx.log
    open_conflicts = repo.conflicts.filter(status=ConflictStatus.OPEN).count()
    if open_conflicts and not ctx.dry_run:
        log(f"{open_conflicts} open conflict(s): the sync stays paused until an admin resolves them")
        _finish(ctx, SyncStatus.PAUSED, repo_status=RepositoryStatus.PAUSED, next_sync_at=None)
        return
    try:
        remote = _remote(repo)
        ctx.commit, refs = _resolve(ctx, remote)
    except (RemoteError, crypto.SecretUnreadable, sshkeys.KeyError_, ValueError) as exc:
        _finish(ctx, SyncStatus.FAILED, errors=[str(exc)], backoff=True)
        return
    log(f"{run.revision or repo.branch} is at {ctx.commit}")
    in_force = ctx.commit == repo.head_sha == repo.last_commit_sha and repo.status == RepositoryStatus.OK
    if in_force:
        log("commit already applied: re-asserting the strategy over panel edits, nothing fetched")
        ctx.reassert = True
        _plan_and_apply(ctx, {})
        return
    forced = run.trigger.startswith("manual")
    if ctx.commit == repo.head_sha and repo.status == RepositoryStatus.INVALID and not forced and not ctx.dry_run:
        # Recorded once: the invalid commit's run already says why; "Sync now" re-reads it.
        Repository.objects.filter(pk=repo.pk).update(
            sync_started_at=None,
            last_sync_at=timezone.now(),
            next_sync_at=timezone.now() + timedelta(seconds=repo.sync_interval),
        )
        run.delete()
        return
    parsed = _read(ctx, remote, refs)
    if parsed is not None:
        _plan_and_apply(ctx, parsed)


def _read(ctx: SyncContext, remote: GitRemote, refs: list[str]) -> dict | None:
    """Fetch if needed, read the commit's files and parse every section; None when it is not usable."""
    repo, mirror = ctx.repository, mirror_path(ctx.repository)
    try:
        if peel(mirror, ctx.commit) is None:
            remote.fetch(mirror, refs)
            ctx.log("fetched")
        files = read_tree(mirror, ctx.commit, lambda p: any(s.wants(p) for s in SECTIONS), subdir=repo.path)
    except RemoteError as exc:
        _finish(ctx, SyncStatus.FAILED, errors=[str(exc)], backoff=True)
        return None
    except MissingDirectory:
        _invalid(
            ctx, [Issue(repo.path, 1, "this directory does not exist in the commit (check the repository's path)")]
        )
        return None
    ctx.log(f"read {len(files)} file(s){' under ' + repo.path if repo.path else ''}")
    parsed, issues = {}, []
    for section in SECTIONS:
        try:
            parsed[section] = section.parse(files, ctx)
        except CommitInvalid as exc:
            issues.extend(exc.issues)
    if issues:
        _invalid(ctx, issues)
        return None
    return parsed


def _invalid(ctx: SyncContext, issues: list[Issue]) -> None:
    repo, head = ctx.repository, ctx.commit
    errors = [str(i) for i in issues]
    ctx.changes, ctx.commands, ctx.policy_changes = [], [], []
    ctx.log(f"commit {head[:12]} is invalid: nothing applied, the last good state stays in force")
    if ctx.dry_run:
        _finish(ctx, SyncStatus.INVALID, errors=errors)
        return
    if head != repo.head_sha:
        notify_admins(
            title=f"GitOps: commit {head[:12]} of {repo.name} is invalid",
            body="\n".join(errors[:20]),
            url=repo.get_absolute_url(),
            level=NotificationLevel.WARNING,
        )
    _finish(
        ctx,
        SyncStatus.INVALID,
        errors=errors,
        repo_status=RepositoryStatus.INVALID,
        head_sha=head,
        last_error=f"Commit {head[:12]} is invalid: " + "; ".join(errors[:5]),
    )


@transaction.atomic
def _plan_and_apply(ctx: SyncContext, parsed: dict) -> None:
    """Plan every section and apply them all, or none, in this one transaction."""
    repo, log = ctx.repository, ctx.log
    if not ctx.dry_run:
        list(Repository.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
    plans = [(section, section.plan(parsed.get(section), ctx)) for section in SECTIONS]
    if ctx.issues:
        _invalid(ctx, ctx.issues)
        return
    conflicts = sum(section.conflicts(plan) for section, plan in plans)
    if ctx.dry_run:
        for section, plan in plans:
            section.preview(plan, ctx)
        log(f"preview: {len(ctx.changes)} key decision(s), {len(ctx.commands)} command(s) would be queued")
        if conflicts:
            log(f"{conflicts} conflict(s): the sync would pause and apply nothing")
        _finish(ctx, SyncStatus.PREVIEW)
        return
    if conflicts:
        _pause(ctx, plans, conflicts)
        return
    for section, plan in plans:
        section.apply(plan, ctx)
    writes = any(c["effect"] != "kept" for c in ctx.changes) or bool(ctx.policy_changes)
    log(f"{len(ctx.commands)} command(s) queued for {sum(c['instance_count'] for c in ctx.commands)} instance run(s)")
    if not ctx.reassert or writes:
        audit_log(
            actor=ctx.actor_label,
            action="gitops.repository.sync",
            obj=repo,
            details={
                "commit": ctx.commit,
                "changes": len(ctx.changes),
                "commands": len(ctx.commands),
                "policies": len(ctx.policy_changes),
            },
        )
    _finish(
        ctx,
        SyncStatus.APPLIED if writes or not ctx.reassert else SyncStatus.NOOP,
        repo_status=RepositoryStatus.OK,
        head_sha=ctx.commit,
        last_commit_sha=ctx.commit,
        last_success_at=timezone.now(),
        last_error="",
    )


def _pause(ctx: SyncContext, plans, conflicts: int) -> None:
    for section, plan in plans:
        if section.conflicts(plan):
            section.record_conflicts(plan, ctx)
    ctx.run.conflicts_opened = conflicts
    ctx.changes = [c for c in ctx.changes if c["action"] == "conflict"]
    ctx.commands, ctx.policy_changes = [], []
    ctx.log(f"{conflicts} conflict(s) between Git and the panel: sync paused, nothing applied")
    notify_admins(
        title=f"GitOps: {conflicts} conflict(s) in {ctx.repository.name}",
        body="An admin must choose which values to keep before the sync continues.",
        url=ctx.repository.get_absolute_url(),
        level=NotificationLevel.WARNING,
    )
    _finish(ctx, SyncStatus.PAUSED, repo_status=RepositoryStatus.PAUSED, head_sha=ctx.commit, next_sync_at=None)
