from rest_framework import serializers

from common.exceptions import ApplicationError
from fleet.choices import ScopeKind
from fleet.models import Group, Instance
from fleet.services import scope_from_input


class ScopeSerializer(serializers.Serializer):
    """`{"kind": "tags", "tags": ["env=production"]}` ↔ fleet.scopes.Scope. Groups by name, instances by id.

    Declare as `scope = ScopeSerializer()` on a ScopedModel serializer: it reads the model's scope
    fields and validates to a `Scope` in `validated_data["scope"]` (store it with services.scope_apply).
    """

    kind = serializers.ChoiceField(choices=ScopeKind.choices, default=ScopeKind.ALL)
    groups = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), many=True, required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    instances = serializers.PrimaryKeyRelatedField(queryset=Instance.objects.all(), many=True, required=False)

    def validate(self, attrs):
        try:
            return scope_from_input(
                kind=attrs.get("kind", ScopeKind.ALL),
                groups=attrs.get("groups", ()),
                tags=attrs.get("tags", ()),
                instances=attrs.get("instances", ()),
            )
        except ApplicationError as exc:
            raise serializers.ValidationError(exc.message) from exc

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
