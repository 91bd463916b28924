"""Agent API payloads. The heartbeat is validated by hand: it is the hottest path in the panel, and
the declared fields below still describe it in the OpenAPI schema."""

from datetime import datetime

from rest_framework import serializers

from fleet.choices import RunStatus


class RegisterSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200, help_text="A registration token: reg_<id>_<secret>")
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$", help_text="Unique instance name")
    hostname = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    address = serializers.RegexField(
        r"^[A-Za-z0-9.\-\[\]:]{1,255}$",
        required=False,
        allow_blank=True,
        default="",
        help_text="host:port where the panel reaches the instance's health endpoint",
    )
    os_version = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class RegisterResponseSerializer(serializers.Serializer):
    instance_id = serializers.IntegerField()
    name = serializers.CharField()
    credential = serializers.CharField(help_text="Send as `Authorization: Agent <credential>`; shown only once")
    heartbeat_interval = serializers.IntegerField(help_text="Seconds between heartbeats")


class AppStateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64)
    running = serializers.BooleanField(default=True)


class UpdateSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="os or app")
    name = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=64)
    released_at = serializers.DateTimeField()


MAX_APPS, MAX_SETTINGS, MAX_UPDATES = 500, 1000, 500


def _fail(field: str, message: str):
    raise serializers.ValidationError({field: [message]})


class HeartbeatSerializer(serializers.Serializer):
    """The instance's full reported state. Idempotent: sending the same state twice changes nothing."""

    os_version = serializers.CharField(max_length=64, required=False, allow_blank=True)
    apps = AppStateSerializer(many=True, required=False)
    settings = serializers.DictField(required=False, help_text="key → string, number or boolean")
    updates = UpdateSerializer(many=True, required=False)
    agent_version = serializers.CharField(max_length=32, required=False, allow_blank=True)

    def run_validation(self, data=serializers.empty):
        # Straight to to_internal_value: the declared fields only document the shape, and building
        # them (a deep copy per request) would cost more than validating the whole state.
        if data is serializers.empty or data is None:
            _fail("non_field_errors", "Send the state as a JSON object.")
        return self.to_internal_value(data)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            _fail("non_field_errors", "Send the state as a JSON object.")
        os_version = data.get("os_version", "")
        if not isinstance(os_version, str) or len(os_version) > 64:
            _fail("os_version", "Must be a string of at most 64 characters.")
        agent_version = data.get("agent_version", "")
        if not isinstance(agent_version, str) or len(agent_version) > 32:
            _fail("agent_version", "Must be a string of at most 32 characters.")
        apps = data.get("apps") or []
        if not isinstance(apps, list) or len(apps) > MAX_APPS:
            _fail("apps", f"Must be a list of at most {MAX_APPS} apps.")
        for i, app in enumerate(apps):
            if not isinstance(app, dict) or not isinstance(app.get("name"), str) or not app["name"]:
                _fail("apps", f"Item {i}: each app needs a 'name'.")
            if not isinstance(app.get("version", ""), str | int | float):
                _fail("apps", f"Item {i}: 'version' must be a string.")
            if not isinstance(app.get("running", True), bool):
                _fail("apps", f"Item {i}: 'running' must be true or false.")
        settings = data.get("settings") or {}
        if not isinstance(settings, dict) or len(settings) > MAX_SETTINGS:
            _fail("settings", f"Must be an object of at most {MAX_SETTINGS} keys.")
        for key, value in settings.items():
            if not isinstance(value, str | int | float | bool) and value is not None:
                _fail("settings", f"'{key}': values must be strings, numbers or booleans.")
        updates = data.get("updates") or []
        if not isinstance(updates, list) or len(updates) > MAX_UPDATES:
            _fail("updates", f"Must be a list of at most {MAX_UPDATES} updates.")
        for i, update in enumerate(updates):
            if not isinstance(update, dict) or not update.get("name") or not update.get("version"):
                _fail("updates", f"Item {i}: each update needs 'name' and 'version'.")
            if update.get("kind", "app") not in ("os", "app"):
                _fail("updates", f"Item {i}: 'kind' must be os or app.")
            released = update.get("released_at")
            try:
                datetime.fromisoformat(released)
            except (TypeError, ValueError):
                _fail("updates", f"Item {i}: 'released_at' must be an ISO-8601 date-time.")
        return {
            "os_version": os_version,
            "apps": apps,
            "settings": settings,
            "updates": updates,
            "agent_version": agent_version,
        }


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
