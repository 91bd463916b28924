"""Policy documents against the stored policies: what would be created, changed, removed; and applying it.

The same plan serves an import (`repository=None`) and a GitOps sync (`repository` = the one syncing):
- an import never touches a policy a repository owns (naming it is a problem of the import);
- a sync owns what its `policies/` creates, takes over a panel policy of the same name, refuses a
  name another repository owns (naming both), and disables — and hands back to the panel — the
  policies it owns that the commit no longer has.
Applying goes through governance.services (checks, audit, versions, evaluation), all in the caller's
transaction: any refusal raises and nothing of the plan stays. `check` applies inside a savepoint
that is always rolled back, which is how a dry run finds the conflicts only applying can find.

What serialises it: `lock_policy_files()` — a transaction-level advisory lock on PostgreSQL (SQLite
has one writer at a time anyway) taken by every import and every sync's policies section before it
reads the stored policies, so two of them never plan against the same state and both create a name.
"""

from dataclasses import dataclass, field

from django.db import connection, transaction

from common.exceptions import ApplicationError
from common.yamlfiles import FilesInvalid, Issue
from fleet.models import Group, Instance
from fleet.scopes import Scope
from fleet.services import scope_from_input

from ..choices import VersionSource
from ..models import Policy
from ..services import policies as services
from ..services.versions import GitOrigin, policy_document

FIELDS = ("name", "description", "enabled", "mode", "scope", "rules")
LOCK_KEY = 7303 << 40  # beside governance.evaluation.locks' keys


def lock_policy_files() -> None:
    """Hold the policy-files lock until the end of the current transaction (see the module docstring)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


@dataclass
class Plan:
    created: list[dict] = field(default_factory=list)
    changed: list[tuple[Policy, dict, list[str]]] = field(default_factory=list)
    removed: list[Policy] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # An import: the panel's policies it does not have (disabled only with prune: then also `removed`).
    missing: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    prune: bool = False

    def summary(self) -> dict:
        return {
            "created": [d["name"] for d in self.created],
            "changed": [{"name": d["name"], "fields": fields} for _, d, fields in self.changed],
            "removed": [p.name for p in self.removed],
            "unchanged": len(self.unchanged),
            "missing": self.missing,
            "prune": self.prune,
        }

    def changes(self, *, removed_as="disabled") -> list[dict]:
        """[{"policy", "action", "file", "fields"}] as a sync run lists them."""
        rows = [{"policy": d["name"], "action": "created", "file": d["file"], "fields": []} for d in self.created]
        rows += [{"policy": d["name"], "action": "changed", "file": d["file"], "fields": f} for _, d, f in self.changed]
        rows += [{"policy": p.name, "action": removed_as, "file": p.git_path, "fields": []} for p in self.removed]
        return rows


def known_names() -> dict:
    return {
        "groups": set(Group.objects.values_list("name", flat=True)),
        "instances": set(Instance.objects.values_list("name", flat=True)),
    }


def _where(policy: Policy) -> str:
    repo = policy.git_repository.name if policy.git_repository else "?"
    return f"repository '{repo}' ({policy.git_path})"


def make_plan(docs: list[dict], *, repository=None, prune: bool = False) -> Plan:
    """Compare documents with the stored policies (matched by name, case-insensitive), under the lock."""
    lock_policy_files()
    plan = Plan(prune=prune)
    stored = {
        p.name.lower(): p
        for p in Policy.objects.select_related("git_repository").prefetch_related("scope_groups", "scope_instances")
    }
    named = set()
    for doc in docs:
        key = doc["name"].lower()
        named.add(key)
        policy = stored.get(key)
        if policy is None:
            plan.created.append(doc)
            continue
        mine = repository is not None and policy.git_repository_id == repository.pk
        if policy.git_repository_id and not mine:
            what = f"repository '{repository.name}' cannot define it too" if repository else "change it there"
            plan.issues.append(
                Issue(doc["file"], doc["line"], f"policy '{policy.name}' is managed by {_where(policy)}: {what}")
            )
            continue
        if policy.policy_type != doc["type"]:
            plan.issues.append(
                Issue(
                    doc["file"],
                    doc["line"],
                    f"policy '{policy.name}' is of type {policy.policy_type}: a type cannot change "
                    "(give the new policy another name, or remove the old one first)",
                )
            )
            continue
        current = policy_document(policy)
        fields = [f for f in FIELDS if current[f] != doc[f]]
        taking_over = repository is not None and not mine
        moved = mine and policy.git_path != doc["file"]
        if fields or taking_over or moved:
            plan.changed.append((policy, doc, fields))
        else:
            plan.unchanged.append(policy.name)
    for key, policy in sorted(stored.items()):
        if key in named:
            continue
        owned = repository is not None and policy.git_repository_id == repository.pk
        absent = repository is None and policy.git_repository_id is None and policy.enabled
        if absent:
            plan.missing.append(policy.name)
        if owned or (absent and prune):
            plan.removed.append(policy)
    return plan


def _scope(doc: dict) -> Scope:
    kind, s = doc["scope"]["kind"], doc["scope"]
    groups = Group.objects.filter(name__in=s.get("groups", ())).values_list("pk", flat=True)
    instances = Instance.objects.filter(name__in=s.get("instances", ())).values_list("pk", flat=True)
    return scope_from_input(kind=kind, groups=list(groups), tags=s.get("tags", ()), instances=list(instances))


def _fields(doc: dict) -> dict:
    return {
        "name": doc["name"],
        "description": doc["description"],
        "rules": doc["rules"],
        "scope": _scope(doc),
        "enabled": doc["enabled"],
        "mode": doc["mode"],
    }


def apply_plan(plan: Plan, *, actor, source: str, repository=None, commit: str = "") -> None:
    """Apply every part of the plan, or raise FilesInvalid naming each policy the services refused.

    Every part is tried (in a savepoint each) so all refusals are reported at once; the caller's
    transaction must be rolled back when this raises."""
    issues = []

    def origin(path: str) -> GitOrigin | None:
        return GitOrigin(repository, path, commit) if repository is not None else None

    def attempt(doc_or_policy, write):
        try:
            with transaction.atomic():
                write()
        except ApplicationError as exc:
            path = doc_or_policy["file"] if isinstance(doc_or_policy, dict) else doc_or_policy.git_path or "(panel)"
            at = doc_or_policy["line"] if isinstance(doc_or_policy, dict) else 1
            issues.append(Issue(path, at, exc.message))

    # Disable first, so a policy that moves its conflicts away is not refused by one that is going.
    for policy in plan.removed:
        attempt(
            policy,
            lambda p=policy: services.policy_set_enabled(
                actor=actor,
                policy=p,
                enabled=False,
                source=source,
                git=origin(p.git_path),
                release=repository is not None,
            ),
        )
    for policy, doc, _ in plan.changed:
        attempt(
            doc,
            lambda p=policy, d=doc: services.policy_update(
                actor=actor, policy=p, source=source, git=origin(d["file"]), **_fields(d)
            ),
        )
    for doc in plan.created:
        attempt(
            doc,
            lambda d=doc: services.policy_create(
                actor=actor, policy_type=d["type"], source=source, git=origin(d["file"]), **_fields(d)
            ),
        )
    if issues:
        raise FilesInvalid(sorted(issues, key=lambda i: (i.path, i.line)))


class _Rollback(Exception):
    pass


def check_plan(plan: Plan, *, actor, source: str, repository=None, commit: str = "") -> list[Issue]:
    """What applying would refuse, found by applying in a savepoint that is then rolled back."""
    found: list[Issue] = []
    try:
        with transaction.atomic():
            try:
                apply_plan(plan, actor=actor, source=source, repository=repository, commit=commit)
            except FilesInvalid as exc:
                found = exc.issues
            raise _Rollback
    except _Rollback:
        pass
    return found


def policy_files_import(files: dict[str, bytes | str], *, actor, apply: bool = False, prune: bool = False) -> Plan:
    """Import policy files: a dry run by default (the plan, checked by a rolled-back apply); `apply`
    applies it in one transaction. FilesInvalid names every problem of every file; nothing applied."""
    from .format import parse_files

    docs = parse_files(files, **known_names())
    with transaction.atomic():
        plan = make_plan(docs, prune=prune)
        if plan.issues:
            raise FilesInvalid(plan.issues)
        if not apply:
            issues = check_plan(plan, actor=actor, source=VersionSource.IMPORT)
            if issues:
                raise FilesInvalid(issues)
            return plan
        apply_plan(plan, actor=actor, source=VersionSource.IMPORT)
    return plan


def policy_files_export() -> list[dict]:
    """Every policy as a document, by name (git-owned ones too: an export is a copy, not a transfer)."""
    qs = Policy.objects.prefetch_related("scope_groups", "scope_instances").order_by("name")
    return [policy_document(p) for p in qs]
