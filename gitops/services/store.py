"""The desired-configuration store: panel edits, and the commands that drive instances towards it."""

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from common.exceptions import ErrorCollector
from common.models import User
from common.services import actor_label, audit_log
from common.validators import unstorable_reason
from fleet.choices import CommandSource, RunStatus, ScopeKind
from fleet.licensing_store import feature_licensed
from fleet.models import CommandRun, Group, Instance
from fleet.scopes import Scope, ScopeError, parse_tag
from fleet.selectors import instance_memberships, instances_in_scope
from fleet.services import CommandSpec, command_create_many

from ..choices import Level
from ..models import DesiredEntry, Repository
from ..reconcile import EntryIndex, plan_commands, same
from ..repoformat import APP_PREFIX, key_problem, value_problem
from ._base import FEATURE, actor_user

Key = tuple[str, str, str]

logger = logging.getLogger(__name__)


# --- Driving the fleet ----------------------------------------------------------------------------


def _pending_gitops_commands(instance_ids=None) -> dict[tuple, str]:
    """(instance, kind, app) → the parameters of the newest GitOps command of that kind still pending
    or running there. Agents run commands in order, so only the newest one says where it will end up."""
    qs = CommandRun.objects.filter(
        status__in=(RunStatus.PENDING, RunStatus.RUNNING), command__source=CommandSource.GITOPS
    )
    if instance_ids is not None:
        qs = qs.filter(instance_id__in=instance_ids)
    rows = qs.order_by("command_id").values_list("instance_id", "command__kind", "command__params")
    return {(iid, kind, params.get("app")): json.dumps(params, sort_keys=True) for iid, kind, params in rows}


@dataclass
class FleetPlan:
    """The commands that would move instances to their effective desired configuration:
    (kind, params as JSON) → the instances needing exactly that change."""

    batches: dict = field(default_factory=dict)

    def records(self, *, limit: int | None = 50) -> list[dict]:
        """What a run records: one item per command, with (up to `limit`) instance names."""
        return [
            {
                "kind": kind,
                "params": json.loads(signature),
                "instances": [i.name for i in targets][:limit],
                "instance_count": len(targets),
            }
            for (kind, signature), targets in sorted(self.batches.items())
        ]


def _applies_to(level: str, target: str, name: str, groups, tags) -> bool:
    if level == Level.FLEET:
        return True
    if level == Level.GROUP:
        return target in groups
    if level == Level.TAG:
        return target in tags
    return target == name


def fleet_plan(*, rows=None, instance_ids=None, prune: tuple[Key, ...] = ()) -> FleetPlan:
    """Plan the commands for `instance_ids` (None: the whole fleet) against the store — or against
    `rows` ((level, target, key, value) of present entries), which is how a preview sees the store as
    the sync would leave it. `prune`: entries removed from Git whose setting keys are to be unset on
    the instances they applied to, unless another entry still sets the key there. A change already
    pending or running for an instance (the newest of its kind there) is not planned twice."""
    if rows is None:
        rows = DesiredEntry.objects.filter(present=True).values_list("level", "target", "key", "value")
    index = EntryIndex(rows)
    plan = FleetPlan(defaultdict(list))
    if not any(index.by_level.values()) and not prune:
        return plan
    # Everything Instance.state reads, so that no deferred field is loaded one instance at a time.
    instances = Instance.objects.only("pk", "name", "apps", "settings", "os_version", "updates")
    if instance_ids is not None:
        instances = instances.filter(pk__in=instance_ids)
    memberships = instance_memberships(instance_ids)
    group_names = dict(Group.objects.values_list("pk", "name"))
    pending = _pending_gitops_commands(instance_ids)
    pruned = [k for k in prune if not k[2].startswith(APP_PREFIX)]
    for inst in instances:
        group_ids, tags = memberships.get(inst.pk, ((), ()))
        groups = [group_names[g] for g in group_ids]
        effective = index.effective(name=inst.name, groups=groups, tags=tags)
        desired = {key: value for key, (value, _source) in effective.items()}
        for level, target, key in pruned:
            if key not in desired and _applies_to(level, target, inst.name, groups, tags):
                desired[key] = None  # None: make sure the key is unset
        if not desired:
            continue
        for kind, params in plan_commands(desired, inst.state):
            signature = json.dumps(params, sort_keys=True)
            if pending.get((inst.pk, kind, params.get("app"))) != signature:
                plan.batches[(kind, signature)].append(inst)
    return plan


def fleet_plan_queue(*, actor, plan: FleetPlan, description: str) -> list[dict]:
    """Queue a plan: instances needing the same change share one command. Returns what was queued."""
    specs, queued = [], plan.records()
    for (kind, signature), targets in sorted(plan.batches.items()):
        specs.append(
            CommandSpec(
                kind=kind,
                params=json.loads(signature),
                source=CommandSource.GITOPS,
                description=description[:200],
                scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=tuple(sorted(i.pk for i in targets))),
                instances=tuple(targets),
            )
        )
    # One batch of INSERTs for every command (hundreds of per-instance set_config changes).
    for entry, command in zip(queued, command_create_many(actor=actor, specs=specs), strict=True):
        entry["command_id"] = command.pk
    return queued


@transaction.atomic
def desired_config_drive(
    *, actor, instance_ids=None, prune=(), description: str = "GitOps desired configuration"
) -> list[dict]:
    """Queue the commands that move instances' reported state to their effective desired configuration."""
    plan = fleet_plan(instance_ids=instance_ids, prune=tuple(prune))
    return fleet_plan_queue(actor=actor, plan=plan, description=description)


def instance_reconcile(*, instance_id: int) -> list[dict]:
    """An instance's reported state changed (or it just registered): drive it to its desired config.
    Runs in a worker (gitops.tasks.reconcile_instance); nothing without the gitops license."""
    if not feature_licensed(FEATURE) or not DesiredEntry.objects.filter(present=True).exists():
        return []
    return desired_config_drive(actor="gitops", instance_ids=[instance_id])


# --- Panel edits ----------------------------------------------------------------------------------


def _check_target(problems: ErrorCollector, level: str, target: str) -> str:
    if level not in Level.values:
        problems.add("level", f"Unknown level '{level}': use {', '.join(Level.values)}.")
        return ""
    target = (target or "").strip()
    if level == Level.FLEET:
        return ""
    if not target:
        problems.add("target", f"Name the {level} this entry applies to.")
    elif reason := unstorable_reason(target):
        problems.add("target", reason)
    elif level == Level.GROUP and not Group.objects.filter(name=target).exists():
        problems.add("target", f"There is no group named '{target}'.")
    elif level == Level.INSTANCE and not Instance.objects.filter(name=target).exists():
        problems.add("target", f"There is no instance named '{target}'.")
    elif level == Level.TAG:
        try:
            key, value = parse_tag(target)
        except ScopeError as exc:
            problems.add("target", str(exc))
        else:
            target = f"{key}={value}"
    return target


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class PlanningQueued:
    """What a panel edit left to a worker: planning and queueing the commands of `instances` instances."""

    instances: int
    description: str


@transaction.atomic
def desired_entry_set(*, actor, level: str, target: str, key: str, value) -> tuple[DesiredEntry, PlanningQueued | None]:
    """Set a key at a level from the panel (UI or API); the commands it implies are planned in a worker
    (gitops.tasks.drive_desired_config, sent after commit): at 10,000 instances a fleet-level edit
    planned in the request took 2.6 s (bench/desired_config_edit.py). Returns the entry and what was
    queued (None: the value was already that, nothing to do). A panel edit of a key Git manages stays
    Git's key: the repository's strategy decides about it at its next sync."""
    problems = ErrorCollector()
    target = _check_target(problems, level, target)
    key = key.strip() if isinstance(key, str) else key
    if problem := key_problem(key):
        problems.add("key", _sentence(problem))
    elif problem := value_problem(key, value):
        problems.add("value", _sentence(problem))
    problems.raise_if_any()
    entry = DesiredEntry.objects.select_for_update().filter(level=level, target=target, key=key).first()
    before = (entry.present, entry.value) if entry else (False, None)
    if entry is None:
        entry = DesiredEntry(level=level, target=target, key=key)
    if before[0] and same(before[1], value):
        return entry, None
    entry.value, entry.present, entry.override_accepted = value, True, False
    entry.panel_changed_at, entry.panel_changed_by = timezone.now(), actor_user(actor)
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
    from ..tasks import drive_desired_config

    affected = _affected_instances(level, target)
    queued = PlanningQueued(
        instances=Instance.objects.count() if affected is None else len(affected),
        description=f"Desired config: {entry}"[:200],
    )
    who = actor.pk if actor_user(actor) else actor_label(actor)
    transaction.on_commit(lambda: _send_drive(drive_desired_config, who, level, target, queued.description))
    return entry, queued


def _send_drive(task, who, level: str, target: str, description: str) -> None:
    """Hand the planning to a worker; with the broker out of reach, plan here, in the request. The edit
    is already stored, and nothing else would plan it until the next sync or a changed heartbeat
    (a fleet with no repository and quiet servers: never), so an outage costs this request time,
    not the change."""
    try:
        task.delay(who, level, target, description)
    except Exception:
        logger.warning("broker unavailable: planning %r for %s %s in the request", description, level, target)
        desired_entry_drive(actor=who, level=level, target=target, description=description)


def desired_entry_drive(*, actor, level: str, target: str, description: str) -> list[dict]:
    """The worker's half of a panel edit: queue the commands that move the instances an entry at
    (level, target) affects to their effective desired configuration, as the store is now (a later edit
    queued meanwhile is planned too; its own run then finds those commands pending and adds nothing).
    Drives of panel edits run one at a time (a transaction-level advisory lock on PostgreSQL), so two
    workers never both queue the same change. `actor`: a user id, or a label. Nothing without the license."""
    if not feature_licensed(FEATURE):
        return []
    if isinstance(actor, int):
        actor = User.objects.filter(pk=actor).first() or "system"
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('gitops.panel_drive'))")
        return desired_config_drive(
            actor=actor, instance_ids=_affected_instances(level, target), description=description
        )


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
    """Remove a key from the panel. A key Git manages stays as a tombstone, so the removal is a panel edit
    the repository's strategy decides about at its next sync."""
    audit_log(
        actor=actor, action="gitops.entry.delete", obj=entry, details={"value": entry.value if entry.present else None}
    )
    if entry.in_git:
        entry.present, entry.value, entry.override_accepted = False, None, False
        entry.panel_changed_at, entry.panel_changed_by = timezone.now(), actor_user(actor)
        entry.save()
    else:
        entry.delete()


def entries_release(*, actor, repository: Repository, remove: bool) -> int:
    """A repository is disconnected: its entries become panel-owned (present values kept, Git's base
    and tombstones dropped), or are removed — with `prune` on, their setting keys are then unset on
    the instances they applied to."""
    owned = DesiredEntry.objects.select_for_update().filter(repository=repository)
    if remove:
        keys = tuple(owned.values_list("level", "target", "key"))
        count = owned.delete()[0]
        if repository.prune and keys:
            desired_config_drive(actor=actor, prune=keys, description=f"GitOps {repository.name} disconnected")
        return count
    owned.filter(present=False).delete()
    return owned.update(
        repository=None, in_git=False, git_base=None, git_path="", git_line=None, override_accepted=False
    )
