"""Tags as things of their own: create, rename, delete (the Tags page). Tags also come into being when an
instance or a registration token names them (inventory.tags_get_or_create).

A rename rewrites every stored scope and registration token that names the tag, so what selected the
servers before still selects them; nothing moves in or out of a scope. All in one transaction, the tag
row locked (select_for_update): two renames of the same tag run one after the other.
"""

from django.db import transaction

from common.exceptions import ApplicationError
from common.services import audit_log
from fleet.choices import ScopeKind
from fleet.models import RegistrationToken, Tag
from fleet.scopes import ScopeError, parse_tag
from fleet.selectors import scoped_models


def _parse(text: str) -> tuple[str, str]:
    try:
        return parse_tag(text or "")
    except ScopeError as exc:
        raise ApplicationError(str(exc), field="tag") from exc


@transaction.atomic
def tag_create(*, actor, tag: str) -> Tag:
    key, value = _parse(tag)
    if Tag.objects.filter(key=key, value=value).exists():
        raise ApplicationError(f"The tag {key}={value} already exists.", field="tag")
    created = Tag.objects.create(key=key, value=value)
    audit_log(actor=actor, action="tag.create", obj=created)
    return created


@transaction.atomic
def tag_rename(*, actor, tag: Tag, new: str) -> Tag:
    """Rename `tag` to `new` (key=value) on its servers, and in every scope and token that names it."""
    tag = Tag.objects.select_for_update().get(pk=tag.pk)
    key, value = _parse(new)
    old, renamed = str(tag), f"{key}={value}"
    if renamed == old:
        return tag
    if Tag.objects.filter(key=key, value=value).exists():
        raise ApplicationError(f"The tag {renamed} already exists: pick another name.", field="tag")
    tag.key, tag.value = key, value
    tag.save(update_fields=["key", "value"])
    rewritten = 0
    for model in scoped_models():
        for obj in model.objects.filter(scope_kind=ScopeKind.TAGS).only("pk", "scope_tags"):
            if old in obj.scope_tags:
                model.objects.filter(pk=obj.pk).update(scope_tags=[renamed if t == old else t for t in obj.scope_tags])
                rewritten += 1
    for token in RegistrationToken.objects.only("pk", "tags"):
        if old in (token.tags or []):
            RegistrationToken.objects.filter(pk=token.pk).update(tags=[renamed if t == old else t for t in token.tags])
            rewritten += 1
    audit_log(actor=actor, action="tag.rename", obj=tag, details={"from": old, "to": renamed, "scopes": rewritten})
    return tag


def tag_selected_by(tag: str) -> list[str]:
    """What selects servers by this tag: ["policy 'No telnet'", ...] (a few hundred scopes at most)."""
    found = []
    for model in scoped_models():
        for obj in model.objects.filter(scope_kind=ScopeKind.TAGS).only("pk", "scope_tags"):
            if tag in obj.scope_tags:
                found.append(f"{model._meta.verbose_name} '{obj}'")
    return found


@transaction.atomic
def tag_delete(*, actor, tag: Tag) -> None:
    """Remove the tag from its servers and delete it. Refused while a scope selects by it: the policy or
    deployment would silently match nothing."""
    tag = Tag.objects.select_for_update().get(pk=tag.pk)
    users = tag_selected_by(str(tag))
    if users:
        listed = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise ApplicationError(f"{tag} is still used to select servers by {listed}: change those first.")
    audit_log(actor=actor, action="tag.delete", obj=tag, details={"servers": tag.instances.count()})
    tag.delete()
