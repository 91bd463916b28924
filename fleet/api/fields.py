from rest_framework import serializers

from common.api.fields import TextField
from common.exceptions import ApplicationError
from common.net import validate_address
from fleet.choices import ScopeKind
from fleet.models import Group, Instance
from fleet.services import scope_from_input

GROUP_NAME_MAX = Group._meta.get_field("name").max_length


def address_field(**kwargs) -> TextField:
    """An instance's health address: host[:port] only (common.net.validate_address), empty for none."""
    kwargs.setdefault("help_text", "host[:port] where the panel reaches the instance's health endpoint")
    return TextField(max_length=255, allow_blank=True, validators=[validate_address], **kwargs)


class ScopeSerializer(serializers.Serializer):
    """`{"kind": "tags", "tags": ["env=production"]}` ↔ fleet.scopes.Scope. Groups by name, instances by id.

    Declare as `scope = ScopeSerializer()` on a ScopedModel serializer: it reads the model's scope
    fields and validates to a `Scope` in `validated_data["scope"]` (store it with services.scope_apply).
    The one place scope input is checked for the API (commands, policies, exceptions, canaries): each
    name must be storable text, and an unknown group is named by its path (`scope.groups[1]`).
    """

    kind = serializers.ChoiceField(choices=ScopeKind.choices, default=ScopeKind.ALL)
    groups = serializers.ListField(
        child=TextField(max_length=GROUP_NAME_MAX), required=False, help_text="Group names (kind groups)"
    )
    tags = serializers.ListField(
        child=TextField(max_length=200), required=False, help_text="key=value, all must match (kind tags)"
    )
    instances = serializers.PrimaryKeyRelatedField(
        queryset=Instance.objects.all(), many=True, required=False, help_text="Instance ids (kind instances)"
    )

    def validate(self, attrs):
        names = attrs.get("groups", ())
        found = dict(Group.objects.filter(name__in=names).values_list("name", "pk")) if names else {}
        missing = {i: [f"There is no group named '{name}'."] for i, name in enumerate(names) if name not in found}
        if missing:
            raise serializers.ValidationError({"groups": missing})
        kind = attrs.get("kind", ScopeKind.ALL)
        try:
            return scope_from_input(
                kind=kind,
                groups=[found[name] for name in names],
                tags=attrs.get("tags", ()),
                instances=attrs.get("instances", ()),
            )
        except ApplicationError as exc:
            field = {ScopeKind.GROUPS: "groups", ScopeKind.TAGS: "tags", ScopeKind.INSTANCES: "instances"}.get(kind)
            raise serializers.ValidationError({field: [exc.message]} if field else exc.message) from exc

    def get_attribute(self, instance):
        return instance  # the whole ScopedModel: its scope lives in several fields

    def to_representation(self, obj):
        """`obj` is a ScopedModel."""
        kind = obj.scope_kind
        data = {"kind": kind}
        if kind == ScopeKind.GROUPS:
            data["groups"] = [g.name for g in obj.scope_groups.all()]
        elif kind == ScopeKind.TAGS:
            data["tags"] = list(obj.scope_tags)
        elif kind == ScopeKind.INSTANCES:
            data["instances"] = [i.pk for i in obj.scope_instances.all()]
        return data
