"""Inventory: groups, tags, what the panel decides about an instance, and scopes stored on objects."""

from django.db import transaction

from common.exceptions import ApplicationError
from common.services import audit_log
from fleet.choices import ScopeKind
from fleet.locks import lock_instances
from fleet.models import Group, Instance, Tag
from fleet.scopes import Scope, ScopeError, parse_tag_filter
from fleet.signals import instance_state_changed


@transaction.atomic
def group_create(*, actor, name: str, description: str = "") -> Group:
    group = Group(name=name.strip(), description=description)
    group.full_clean()
    group.save()
    audit_log(actor=actor, action="group.create", obj=group)
    return group


@transaction.atomic
def group_update(*, actor, group: Group, name: str, description: str = "") -> Group:
    group.name, group.description = name.strip(), description
    group.full_clean()
    group.save()
    audit_log(actor=actor, action="group.update", obj=group)
    return group


@transaction.atomic
def group_delete(*, actor, group: Group) -> None:
    audit_log(actor=actor, action="group.delete", obj=group)
    group.delete()


def tags_get_or_create(tags: list[str]) -> list[Tag]:
    result = []
    for tag in parse_tag_filter(tags):
        key, value = tag.split("=", 1)
        result.append(Tag.objects.get_or_create(key=key, value=value)[0])
    return result


@transaction.atomic
def instance_update(
    *,
    actor,
    instance: Instance,
    address: str | None = None,
    groups: list[Group] | None = None,
    tags: list[str] | None = None,
) -> Instance:
    """Change what the panel decides about an instance: its health address, groups and tags."""
    changes = {}
    if address is not None and address != instance.address:
        changes["address"] = [instance.address, address]
        instance.address = address
        instance.save(update_fields=["address"])
    if groups is not None:
        before = sorted(g.name for g in instance.groups.all())
        instance.groups.set(groups)
        after = sorted(g.name for g in groups)
        if before != after:
            changes["groups"] = [before, after]
    if tags is not None:
        before = sorted(str(t) for t in instance.tags.all())
        tag_objs = tags_get_or_create(tags)
        instance.tags.set(tag_objs)
        after = sorted(str(t) for t in tag_objs)
        if before != after:
            changes["tags"] = [before, after]
    if changes:
        audit_log(actor=actor, action="instance.update", obj=instance, details=changes)
        # Group/tag changes move the instance in and out of scopes: re-evaluate like a state change.
        transaction.on_commit(lambda: instance_state_changed.send(sender=Instance, instance_id=instance.pk))
    return instance


@transaction.atomic
def instance_delete(*, actor, instance: Instance) -> None:
    """Delete an instance and what hangs off it. Takes the instance's lock first (fleet.locks), so a
    governance evaluation running meanwhile finishes before its rows are collected for deletion."""
    lock_instances([instance.pk])
    audit_log(actor=actor, action="instance.delete", obj=instance)
    instance.delete()


def scope_apply(obj, scope: Scope) -> None:
    """Store `scope` on a saved ScopedModel (policy, command, canary, config entry)."""
    obj.scope_kind = scope.kind
    obj.scope_tags = list(scope.tags)
    obj.save(update_fields=["scope_kind", "scope_tags"])
    obj.scope_groups.set(scope.group_ids)
    obj.scope_instances.set(scope.instance_ids)


def scope_from_input(*, kind: str, groups=(), tags=(), instances=()) -> Scope:
    """Build a Scope from form/API input (group and instance objects or ids, tags as text or list)."""
    try:
        return Scope(
            kind=kind,
            group_ids=tuple(sorted(getattr(g, "pk", g) for g in groups)) if kind == ScopeKind.GROUPS else (),
            tags=tuple(parse_tag_filter(tags)) if kind == ScopeKind.TAGS else (),
            instance_ids=tuple(sorted(getattr(i, "pk", i) for i in instances)) if kind == ScopeKind.INSTANCES else (),
        )
    except ScopeError as exc:
        raise ApplicationError(str(exc)) from exc
