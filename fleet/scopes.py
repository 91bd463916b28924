"""Scopes: which instances a policy, command, canary or GitOps entry applies to. Pure logic, no ORM.

A scope is all instances, a set of groups (an instance in any of them), a tag filter (every
`key=value` must match: ANDed), or named instances. `fleet.selectors.instances_in_scope` turns a
scope into a queryset; `Scope.matches` answers the same question for one instance in memory.
"""

import re
from dataclasses import dataclass, field

from .choices import ScopeKind

TAG_RE = re.compile(r"^(?P<key>[A-Za-z0-9_.\-/]{1,64})=(?P<value>[A-Za-z0-9_.\-/:]{1,128})\Z")


class ScopeError(ValueError):
    """A scope or tag filter that cannot be understood; the message says why."""


def parse_tag(text: str) -> tuple[str, str]:
    text = text.strip()
    match = TAG_RE.match(text)
    if not match:
        raise ScopeError(
            f"'{text}' is not a tag: write key=value (letters, digits, '.', '-', '_', '/'), e.g. env=production"
        )
    return match["key"], match["value"]


def parse_tag_filter(text_or_list) -> list[str]:
    """`"env=production, role=web"` or a list of such strings → normalised `["env=production", "role=web"]`."""
    items = text_or_list.split(",") if isinstance(text_or_list, str) else list(text_or_list)
    tags = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        if not isinstance(item, str):
            raise ScopeError(f"{item!r} is not a tag: write key=value")
        key, value = parse_tag(item)
        tag = f"{key}={value}"
        if tag not in tags:
            tags.append(tag)
    return tags


@dataclass(frozen=True)
class Scope:
    kind: str = ScopeKind.ALL
    group_ids: tuple[int, ...] = field(default_factory=tuple)
    tags: tuple[str, ...] = field(default_factory=tuple)
    instance_ids: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind not in ScopeKind.values:
            raise ScopeError(f"Unknown scope '{self.kind}': use one of {', '.join(ScopeKind.values)}.")
        if self.kind == ScopeKind.GROUPS and not self.group_ids:
            raise ScopeError("Choose at least one group for a group scope.")
        if self.kind == ScopeKind.TAGS and not self.tags:
            raise ScopeError("Enter at least one key=value tag for a tag scope.")
        if self.kind == ScopeKind.INSTANCES and not self.instance_ids:
            raise ScopeError("Choose at least one instance.")

    def matches(self, *, instance_id: int, group_ids, tags) -> bool:
        """Does an instance with these group ids and `key=value` tags fall in this scope?"""
        if self.kind == ScopeKind.ALL:
            return True
        if self.kind == ScopeKind.GROUPS:
            return bool(set(self.group_ids) & set(group_ids))
        if self.kind == ScopeKind.TAGS:
            return set(self.tags) <= set(tags)
        return instance_id in self.instance_ids

    def overlaps(self, other: "Scope") -> bool | None:
        """True/False when decidable without data; None when it depends on the fleet (ask the database)."""
        if ScopeKind.ALL in (self.kind, other.kind):
            return True
        if self.kind == other.kind == ScopeKind.GROUPS:
            return bool(set(self.group_ids) & set(other.group_ids))
        if self.kind == other.kind == ScopeKind.INSTANCES:
            return bool(set(self.instance_ids) & set(other.instance_ids))
        return None
