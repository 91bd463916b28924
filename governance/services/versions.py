"""Policy versions: every change of a policy kept as its whole policy-file document (PolicyVersion).

Recorded by the policy services in the same transaction as the change, so a version exists exactly
when the change committed. Serialised per policy by the services' row lock (select_for_update).
"""

from dataclasses import dataclass

from django.db.models import Max
from django.utils import timezone

from fleet.choices import ScopeKind

from ..choices import VersionSource
from ..models import Policy, PolicyVersion
from ..policyfiles.format import document, scope_document


@dataclass(frozen=True)
class GitOrigin:
    """A change made by a GitOps sync: which repository, file and commit."""

    repository: object
    path: str
    commit: str


def policy_document(policy: Policy) -> dict:
    """The policy as a policy file writes it (scope by names)."""
    kind = policy.scope_kind
    return document(
        name=policy.name,
        description=policy.description,
        policy_type=policy.policy_type,
        enabled=policy.enabled,
        mode=policy.mode,
        scope=scope_document(
            kind,
            groups=[g.name for g in policy.scope_groups.all()] if kind == ScopeKind.GROUPS else (),
            tags=policy.scope_tags if kind == ScopeKind.TAGS else (),
            instances=[i.name for i in policy.scope_instances.all()] if kind == ScopeKind.INSTANCES else (),
        ),
        rules=policy.rules,
    )


def _actor_label(actor, git: GitOrigin | None) -> str:
    if getattr(actor, "pk", None):
        return actor.get_username()
    if isinstance(actor, str) and actor:
        return actor
    return f"gitops:{git.repository.name}" if git else "system"


def version_record(*, policy: Policy, change: str, actor, source: str, git: GitOrigin | None = None):
    """Keep the policy's state after `change` as its next version; None when nothing it keeps changed."""
    snapshot = policy_document(policy)
    last = PolicyVersion.objects.filter(policy=policy).order_by("-number").first()
    if last is not None and change != "deleted" and last.snapshot == snapshot:
        return None
    number = (PolicyVersion.objects.filter(policy=policy).aggregate(n=Max("number"))["n"] or 0) + 1
    return PolicyVersion.objects.create(
        policy=policy,
        policy_name=policy.name,
        number=number,
        change=change,
        snapshot=snapshot,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_label=_actor_label(actor, git)[:150],
        source=source if source in VersionSource.values else VersionSource.SYSTEM,
        repository_name=git.repository.name if git else "",
        commit_sha=git.commit if git else "",
        git_path=git.path if git else "",
        created=timezone.now(),
    )
