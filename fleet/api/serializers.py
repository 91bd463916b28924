from rest_framework import serializers

from common.api.fields import BoundedDateTimeField, TextField
from fleet.choices import CommandType
from fleet.models import Command, CommandRun, Group, Instance, RegistrationToken, Tag, TokenUse
from fleet.scopes import ScopeError, parse_tag_filter

from .fields import ScopeSerializer, address_field


class TagListField(serializers.ListField):
    """Tags as `key=value` strings, validated and normalised on input."""

    child = TextField(max_length=200)

    def to_internal_value(self, data):
        try:
            return parse_tag_filter(super().to_internal_value(data))
        except ScopeError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def to_representation(self, data):
        return [str(t) for t in data.all()] if hasattr(data, "all") else list(data)


class InstanceSerializer(serializers.ModelSerializer):
    groups = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    tags = TagListField(read_only=True)

    class Meta:
        model = Instance
        fields = [
            "id",
            "name",
            "hostname",
            "address",
            "os_version",
            "status",
            "last_seen_at",
            "registered_at",
            "groups",
            "tags",
            "agent_version",
        ]


class AppStateSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    running = serializers.BooleanField()


class AvailableUpdateSerializer(serializers.Serializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    version = serializers.CharField()
    released_at = serializers.CharField()


class InstanceDetailSerializer(InstanceSerializer):
    apps = AppStateSerializer(many=True, read_only=True)
    settings = serializers.DictField(read_only=True)
    updates = AvailableUpdateSerializer(many=True, read_only=True)

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "apps", "settings", "updates", "state_changed_at"]


class InstanceUpdateSerializer(serializers.Serializer):
    """What the panel decides about an instance. Omitted fields stay as they are."""

    address = address_field(required=False)
    groups = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), many=True, required=False)
    tags = TagListField(required=False)


class GroupSerializer(serializers.ModelSerializer):
    instance_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Group
        fields = ["id", "name", "description", "created", "instance_count"]
        read_only_fields = ["created"]


class TagSerializer(serializers.ModelSerializer):
    instance_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Tag
        fields = ["id", "key", "value", "instance_count"]


class TokenUseSerializer(serializers.ModelSerializer):
    instance = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True, help_text="null for a refused attempt or a deleted instance"
    )

    class Meta:
        model = TokenUse
        fields = ["used_at", "instance", "remote_addr", "accepted", "reason"]


class RegistrationTokenSerializer(serializers.ModelSerializer):
    name = TextField(max_length=100)
    max_uses = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        allow_null=True,
        required=False,
        help_text="Empty for unlimited; 1 for one-time",
    )
    expires_at = BoundedDateTimeField(allow_null=True, required=False, help_text="Empty for no expiry")
    groups = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), many=True, required=False)
    tags = TagListField(required=False)
    status = serializers.CharField(read_only=True)
    one_time = serializers.BooleanField(source="is_one_time", read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="null when made by the system or a deleted user",
    )

    class Meta:
        model = RegistrationToken
        fields = [
            "id",
            "name",
            "max_uses",
            "one_time",
            "use_count",
            "expires_at",
            "revoked_at",
            "status",
            "groups",
            "tags",
            "created",
            "created_by",
        ]
        read_only_fields = ["use_count", "revoked_at", "created"]


class RegistrationTokenCreatedSerializer(RegistrationTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The plaintext token. Shown only in this response.")

    class Meta(RegistrationTokenSerializer.Meta):
        fields = [*RegistrationTokenSerializer.Meta.fields, "token"]


class RegistrationTokenDetailSerializer(RegistrationTokenSerializer):
    uses = TokenUseSerializer(many=True, read_only=True, help_text="Every registration attempt, newest first")

    class Meta(RegistrationTokenSerializer.Meta):
        fields = [*RegistrationTokenSerializer.Meta.fields, "uses"]


class RunCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField(source="run_total")
    pending = serializers.IntegerField(source="run_pending")
    running = serializers.IntegerField(source="run_running")
    completed = serializers.IntegerField(source="run_completed")
    failed = serializers.IntegerField(source="run_failed")

    def get_attribute(self, instance):
        return instance


class CommandSerializer(serializers.ModelSerializer):
    """Read shape of a command; `runs` counts come from fleet.selectors.command_list."""

    scope = ScopeSerializer()
    summary = serializers.CharField(source="__str__", read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="null when made by the system or a deleted user",
    )
    runs = RunCountsSerializer(read_only=True)

    class Meta:
        model = Command
        fields = [
            "id",
            "kind",
            "params",
            "summary",
            "description",
            "source",
            "scope",
            "timeout_seconds",
            "inverse_of",
            "created",
            "created_by",
            "runs",
        ]


class CommandCreateSerializer(serializers.Serializer):
    """Send a command to a target: one instance, groups, a tag filter or the whole fleet."""

    kind = serializers.ChoiceField(choices=CommandType.choices)
    params = serializers.DictField(required=False, default=dict, help_text='e.g. {"app": "nginx", "version": "1.27"}')
    scope = ScopeSerializer(help_text='e.g. {"kind": "tags", "tags": ["env=staging"]}')
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    timeout_seconds = serializers.IntegerField(min_value=10, max_value=86400, required=False)


class CommandRunSerializer(serializers.ModelSerializer):
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    kind = serializers.CharField(source="command.kind", read_only=True)

    class Meta:
        model = CommandRun
        fields = [
            "id",
            "command",
            "kind",
            "instance",
            "instance_name",
            "status",
            "progress",
            "progress_message",
            "output",
            "error",
            "before_state",
            "created",
            "delivered_at",
            "acknowledged_at",
            "deliveries",
            "finished_at",
            "pickup_deadline",
            "finish_deadline",
        ]


class CommandDetailSerializer(CommandSerializer):
    run_list = CommandRunSerializer(source="runs", many=True, read_only=True)

    class Meta(CommandSerializer.Meta):
        fields = [*CommandSerializer.Meta.fields, "run_list"]


class FleetSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    online = serializers.IntegerField()
    offline = serializers.IntegerField()
    pending = serializers.IntegerField()
    queue_pending = serializers.IntegerField()
    queue_running = serializers.IntegerField()


class OfflineInstanceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    last_seen_at = serializers.DateTimeField(allow_null=True)


class FleetHealthSerializer(serializers.Serializer):
    status = serializers.CharField(
        help_text="healthy, degraded (instances offline or runs failed in the last hour) or empty"
    )
    online = serializers.IntegerField()
    offline = serializers.IntegerField()
    pending = serializers.IntegerField()
    offline_instances = OfflineInstanceSerializer(many=True)
    failed_runs_last_hour = serializers.IntegerField()


class LicenseStatusSerializer(serializers.Serializer):
    state = serializers.CharField()
    plan = serializers.CharField(help_text="The plan in force (community without a usable license)")
    licensed_plan = serializers.CharField(allow_null=True)
    customer = serializers.CharField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    limits = serializers.DictField()
    features = serializers.DictField(child=serializers.BooleanField())
    error = serializers.CharField(allow_blank=True)


class LicenseUploadSerializer(serializers.Serializer):
    license = serializers.CharField(max_length=20000, help_text="The license text as issued")
