"""Agent API payloads. The heartbeat is checked by fleet.state.validate_heartbeat (in
services.heartbeat_record): a walk written for 3,000-package states; the declared fields below
describe the same rules in the OpenAPI schema."""

from django.core.validators import MaxLengthValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api.fields import BoundedDateTimeField, TextField, VersionField
from fleet.api.fields import address_field
from fleet.choices import RunStatus
from fleet.state import (
    MAX_AGENT_VERSION,
    MAX_APPS,
    MAX_NAME,
    MAX_OS_VERSION,
    MAX_SETTING_KEY,
    MAX_SETTING_TEXT,
    MAX_SETTINGS,
    MAX_UPDATES,
    NUMBER_RANGE,
    validate_heartbeat,
)


class RegisterSerializer(serializers.Serializer):
    token = TextField(max_length=200, help_text="A registration token: reg_<id>_<secret>")
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$", help_text="Unique instance name")
    hostname = TextField(max_length=255, required=False, allow_blank=True, default="")
    address = address_field(required=False, default="")
    os_version = VersionField(max_length=MAX_OS_VERSION, required=False, allow_blank=True, default="")


class RegisterResponseSerializer(serializers.Serializer):
    instance_id = serializers.IntegerField()
    name = serializers.CharField()
    credential = serializers.CharField(help_text="Send as `Authorization: Agent <credential>`; shown only once")
    heartbeat_interval = serializers.IntegerField(help_text="Seconds between heartbeats")


class HeartbeatAppSerializer(serializers.Serializer):
    name = TextField(max_length=MAX_NAME, help_text="Package or app name, unique in the heartbeat")
    version = VersionField(help_text="The installed version, e.g. 1.24.0-2ubuntu7")
    running = serializers.BooleanField(default=True)


class HeartbeatUpdateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[("os", "os"), ("app", "app")], default="app")
    name = TextField(max_length=MAX_NAME)
    version = VersionField()
    released_at = BoundedDateTimeField(
        help_text="When the update became available (without an offset: UTC); years 2000–9999"
    )


@extend_schema_field(
    {
        "anyOf": [
            {"type": "string", "maxLength": MAX_SETTING_TEXT},
            {"type": "number", "minimum": NUMBER_RANGE[0], "maximum": NUMBER_RANGE[1]},
            {"type": "boolean"},
        ]
    }
)
class SettingValueField(serializers.JSONField):
    """A setting's value: text, a finite number or true/false."""


class HeartbeatSerializer(serializers.Serializer):
    """The instance's full reported state. Idempotent: sending the same state twice changes nothing.

    Checked by fleet.state.validate_heartbeat (every problem at once, by path); the fields below
    describe the same rules in the OpenAPI schema. Keys the panel does not know are ignored. The body
    is at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (413 beyond)."""

    os_version = VersionField(
        max_length=MAX_OS_VERSION, required=False, allow_blank=True, help_text="e.g. 24.04 (empty if unknown)"
    )
    apps = serializers.ListField(child=HeartbeatAppSerializer(), max_length=MAX_APPS, required=False)
    settings = serializers.DictField(
        child=SettingValueField(),
        required=False,
        validators=[MaxLengthValidator(MAX_SETTINGS)],
        help_text=f"key (at most {MAX_SETTING_KEY} characters) → string, finite number or boolean",
    )
    updates = serializers.ListField(child=HeartbeatUpdateSerializer(), max_length=MAX_UPDATES, required=False)
    agent_version = TextField(max_length=MAX_AGENT_VERSION, required=False, allow_blank=True)

    def run_validation(self, data=serializers.empty):
        # Straight to validate_heartbeat: the declared fields only document the shape, and running
        # them over 3,000 apps would cost far more than the hand-written walk.
        if data is serializers.empty:
            data = None
        state, errors = validate_heartbeat(data)
        if errors:
            raise serializers.ValidationError(errors)
        return state


class HeartbeatResponseSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="The reported state differed from the last one")
    heartbeat_interval = serializers.IntegerField()


class AgentCommandSerializer(serializers.Serializer):
    """A run delivered to its instance (now running): what to do and by when."""

    run_id = serializers.IntegerField(source="pk")
    command_id = serializers.IntegerField()
    kind = serializers.CharField(source="command.kind")
    params = serializers.JSONField(source="command.params")
    timeout_seconds = serializers.IntegerField(source="command.timeout_seconds")
    finish_deadline = serializers.DateTimeField()


class AgentCommandsResponseSerializer(serializers.Serializer):
    commands = AgentCommandSerializer(many=True)


class RunReportSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.FAILED],
        help_text="running (progress), completed or failed",
    )
    progress = serializers.IntegerField(min_value=0, max_value=100, required=False)
    progress_message = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    output = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000)
    error = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class RunReportResponseSerializer(serializers.Serializer):
    run_id = serializers.IntegerField(source="pk")
    status = serializers.CharField()
    progress = serializers.IntegerField()
