"""Sections of a repository: each is validated with the whole commit and applied in the sync's one
transaction, so a commit is applied entirely or not at all.

The desired configuration (`fleet.yaml`, `groups/`, `tags/`, `instances/`) is the built-in section.
Another part of the repository (the `policies/` directory: PolicySection) becomes part of every sync by adding a
`Section` to `SECTIONS`: its `parse` problems make the commit invalid with the others', its `plan`
runs inside the sync's transaction, its conflicts pause the sync with the others', and its `apply`
commits or rolls back with them. A preview calls `parse`, `plan` and `preview`, never `apply`.
"""

import time
from dataclasses import dataclass, field

from django.db.models import F, Q
from django.utils import timezone

from fleet.models import Group, Instance
from governance.choices import VersionSource
from governance.policyfiles.format import is_policy_file
from governance.policyfiles.format import parse_files as parse_policy_files
from governance.policyfiles.plan import apply_plan, check_plan, known_names, make_plan

from ..choices import ConflictStatus, Level
from ..models import Conflict, DesiredEntry, Repository, SyncRun
from ..reconcile import StoreState, merge
from ..repoformat import Issue, is_config_path, parse_commit
from .store import fleet_plan, fleet_plan_queue


class RunLog:
    """The timestamped log of one run."""

    def __init__(self):
        self.lines, self.t0 = [], time.monotonic()

    def __call__(self, message: str):
        self.lines.append(f"[{time.monotonic() - self.t0:7.3f}s] {message}")

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class SyncContext:
    repository: Repository
    run: SyncRun
    log: RunLog
    actor: object
    commit: str = ""
    dry_run: bool = False
    # The commit is the one in force: nothing is fetched; Git's values are those recorded at its sync.
    reassert: bool = False
    # Problems found while planning (a key another repository owns): the commit is then invalid.
    issues: list[Issue] = field(default_factory=list)
    changes: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    policy_changes: list = field(default_factory=list)

    @property
    def actor_label(self):
        return self.actor or f"gitops:{self.repository.name}"


class Section:
    """One part of a repository. Subclasses implement every method; see the module docstring."""

    name = ""

    def wants(self, path: str) -> bool:
        raise NotImplementedError

    def parse(self, files: dict[str, bytes], ctx: SyncContext):
        """Validate the section's files; raise repoformat.CommitInvalid with every problem."""
        raise NotImplementedError

    def plan(self, parsed, ctx: SyncContext):
        """Decide what the sync does (parsed is None when ctx.reassert); add problems to ctx.issues."""
        raise NotImplementedError

    def conflicts(self, plan) -> int:
        return 0

    def record_conflicts(self, plan, ctx: SyncContext) -> None:
        raise NotImplementedError

    def apply(self, plan, ctx: SyncContext) -> None:
        raise NotImplementedError

    def preview(self, plan, ctx: SyncContext) -> None:
        raise NotImplementedError


@dataclass
class DesiredPlan:
    result: object
    entries: dict
    locations: dict
    moved: list


class DesiredConfigSection(Section):
    """fleet.yaml, groups/, tags/, instances/ → the desired-configuration store and the fleet's commands."""

    name = "desired configuration"

    def wants(self, path: str) -> bool:
        return is_config_path(path)

    def parse(self, files, ctx):
        prefix = f"{ctx.repository.path}/" if ctx.repository.path else ""
        return parse_commit(
            {p: c for p, c in files.items() if self.wants(p)},
            groups=set(Group.objects.values_list("name", flat=True)),
            instances=set(Instance.objects.values_list("name", flat=True)),
            prefix=prefix,
        )

    def plan(self, parsed, ctx):
        repo = ctx.repository
        owned = {(e.level, e.target, e.key): e for e in _entries(repo, ctx.dry_run, drifted=parsed is None)}
        if parsed is None:  # the commit in force: Git still says what it said at its sync
            git = {k: e.git_base for k, e in owned.items() if e.in_git}
            locations = {k: (e.git_path, e.git_line) for k, e in owned.items()}
        else:
            git, locations = parsed.desired, parsed.locations
            _claim_panel_keys(owned, git)
            ctx.issues.extend(_overlaps(repo, git, locations))
        store = {k: StoreState(e.present, e.value, e.in_git, e.git_base, e.override_accepted) for k, e in owned.items()}
        result = merge(store, git, repo.conflict_strategy)
        moved = [
            k
            for k, e in owned.items()
            if k in locations and k not in result.writes and (e.git_path, e.git_line) != tuple(locations[k])
        ]
        for item in result.drift:
            ctx.log(
                f"{item['action']} ({repo.conflict_strategy}): {item['level']} {item['target']} {item['key']}: "
                f"panel {item['after']!r}, Git {item.get('git')!r}"
            )
        ctx.changes.extend(result.changes)
        return DesiredPlan(result, owned, locations, moved)

    def conflicts(self, plan):
        return len(plan.result.conflicts)

    def record_conflicts(self, plan, ctx):
        for c in plan.result.conflicts:
            c = dict(c)
            level, target, key = c.pop("key")
            Conflict.objects.update_or_create(
                repository=ctx.repository,
                level=level,
                target=target,
                key=key,
                status=ConflictStatus.OPEN,
                defaults={**c, "run": ctx.run, "commit_sha": ctx.commit},
            )

    def apply(self, plan, ctx):
        counts = _write(ctx.repository, plan)
        ctx.log(f"store: {counts[0]} added, {counts[1]} changed, {counts[2]} removed")
        if not (counts[0] or counts[1] or counts[2]) and ctx.reassert:
            return  # nothing moved: the fleet was driven when these values were written
        prune = tuple(plan.result.removed) if ctx.repository.prune else ()
        fleet = fleet_plan(prune=prune)
        ctx.commands.extend(
            fleet_plan_queue(
                actor=ctx.actor_label,
                plan=fleet,
                description=f"GitOps {ctx.repository.name} @ {ctx.commit[:12]}",
            )
        )

    def preview(self, plan, ctx):
        rows = {
            (level, target, key): value
            for level, target, key, value in DesiredEntry.objects.filter(present=True).values_list(
                "level", "target", "key", "value"
            )
        }
        for key, state in plan.result.writes.items():
            rows.pop(key, None)
            if state is not None and state.present:
                rows[key] = state.value
        prune = tuple(plan.result.removed) if ctx.repository.prune else ()
        if ctx.reassert and not plan.result.writes:
            return
        fleet = fleet_plan(rows=[(*k, v) for k, v in rows.items()], prune=prune)
        ctx.commands.extend(fleet.records(limit=None))


def _entries(repo: Repository, dry_run: bool, *, drifted: bool = False):
    """The repository's entries; with `drifted`, only those the panel changed (what re-asserting the
    commit in force can be about), so that an unchanged sync reads a handful of rows, not 10,000."""
    qs = DesiredEntry.objects.filter(repository=repo)
    if drifted:
        same_value = Q(value=F("git_base")) | Q(value__isnull=True, git_base__isnull=True)
        qs = qs.filter(Q(present=False) | Q(override_accepted=True) | ~same_value)
    return qs if dry_run else qs.select_for_update()


def _claim_panel_keys(owned: dict, git: dict) -> None:
    """Panel-owned entries the commit now defines take part in the merge (a conflict if they differ)."""
    for e in DesiredEntry.objects.filter(repository__isnull=True):
        key = (e.level, e.target, e.key)
        if key in git:
            owned[key] = e


def _overlaps(repo: Repository, git: dict, locations: dict) -> list[Issue]:
    """Keys of the commit that another repository owns: each names both repositories, file and line."""
    issues = []
    foreign = DesiredEntry.objects.filter(repository__isnull=False).exclude(repository=repo)
    rows = foreign.values_list("level", "target", "key", "repository__name", "git_path", "git_line")
    for level, target, key, other, path, line in rows:
        if (level, target, key) not in git:
            continue
        where = "the fleet" if level == Level.FLEET else f"{level} {target}"
        mine = locations[(level, target, key)]
        issues.append(
            Issue(
                mine[0],
                mine[1],
                f"'{key}' for {where} is already defined by repository '{other}' ({path}, line {line}); "
                f"a key belongs to one repository, so '{repo.name}' cannot define it too",
            )
        )
    return sorted(issues, key=lambda i: (i.path, i.line))


def _write(repo: Repository, plan: DesiredPlan) -> tuple[int, int, int]:
    now = timezone.now()
    creates, updates, deletes = [], [], []
    for key, state in plan.result.writes.items():
        entry = plan.entries.get(key)
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
        entry.override_accepted = state.accepted
        entry.repository = repo if state.in_git else None
        entry.git_path, entry.git_line = plan.locations.get(key, ("", None)) if state.in_git else ("", None)
        entry.git_synced_at = now
    for key in plan.moved:
        entry = plan.entries[key]
        entry.git_path, entry.git_line = plan.locations[key]
        updates.append(entry)
    DesiredEntry.objects.filter(pk__in=deletes).delete()
    DesiredEntry.objects.bulk_create(creates, batch_size=2000)
    fields = ["present", "value", "in_git", "git_base", "override_accepted", "repository", "git_path", "git_line"]
    DesiredEntry.objects.bulk_update(updates, [*fields, "git_synced_at", "updated"], batch_size=2000)
    return len(creates), len(updates) - len(plan.moved), len(deletes)


class PolicySection(Section):
    """policies/*.yaml → governance policies this repository owns (governance.policyfiles: the format
    and the plan). Created, changed, or — gone from the commit — disabled and handed back to the panel;
    a name another repository owns makes the commit invalid. Applying is tried in a savepoint while
    planning, so a policy the services would refuse (a required/blocked conflict) makes the commit
    invalid with its file and line instead of failing half-way."""

    name = "policies"

    def wants(self, path: str) -> bool:
        return path.startswith("policies/") and is_policy_file(path)

    def parse(self, files, ctx):
        prefix = f"{ctx.repository.path}/" if ctx.repository.path else ""
        return parse_policy_files({p: c for p, c in files.items() if self.wants(p)}, **known_names(), prefix=prefix)

    def plan(self, parsed, ctx):
        if parsed is None:  # the commit in force: Git-owned policies are read-only, nothing drifts
            return None
        plan = make_plan(parsed, repository=ctx.repository)
        ctx.issues.extend(plan.issues)
        if not plan.issues:
            ctx.issues.extend(self._attempt(check_plan, plan, ctx))
        ctx.policy_changes = plan.changes()
        for change in ctx.policy_changes:
            ctx.log(f"policy {change['action']}: {change['policy']} ({change['file']})")
        return plan

    @staticmethod
    def _attempt(func, plan, ctx):
        return func(plan, actor=ctx.actor_label, source=VersionSource.GIT, repository=ctx.repository, commit=ctx.commit)

    def apply(self, plan, ctx):
        if plan is not None:
            self._attempt(apply_plan, plan, ctx)
            ctx.log(f"policies: {len(ctx.policy_changes)} changed")

    def preview(self, plan, ctx):
        pass  # ctx.policy_changes already says what a sync would do


SECTIONS: list[Section] = [DesiredConfigSection(), PolicySection()]
