from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api.fields import GitRefField, TextField

from ..choices import (
    AuthMethod,
    ConflictStatus,
    ConflictStrategy,
    HostKeyScan,
    Level,
    RepositoryStatus,
    Resolution,
    SyncStatus,
)
from ..models import Conflict, DesiredEntry, Repository, SyncRun
from ..services.repositories import (
    MAX_INTERVAL,
    MIN_INTERVAL,
    validate_path,
    validate_private_key,
    validate_revision,
    validate_url,
)


def inline_choice(choices_cls, **kwargs) -> serializers.ChoiceField:
    """A choice field documented as a string listing its values. Field names such as "level" and
    "status" carry other choice sets in other apps; as enum components their names would collide
    (drf-spectacular W001) until settings.SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] names them."""

    @extend_schema_field({"type": "string", "description": "One of: " + ", ".join(choices_cls.values)})
    class _Choice(serializers.ChoiceField):
        pass

    return _Choice(choices=choices_cls.choices, **kwargs)


class RepositorySerializer(serializers.ModelSerializer):
    """A repository and its sync status. The private key is never part of any response."""

    open_conflicts = serializers.IntegerField(read_only=True, default=0)
    status = inline_choice(RepositoryStatus, read_only=True)
    host_key_confirmed = serializers.BooleanField(read_only=True)
    host_key_scan = inline_choice(HostKeyScan, read_only=True)
    webhook_enabled = serializers.BooleanField(read_only=True)
    webhook_url = serializers.SerializerMethodField()

    def get_webhook_url(self, obj) -> str:
        path = reverse("gitops-api:gitops-webhook", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    class Meta:
        model = Repository
        fields = [
            "id",
            "name",
            "url",
            "branch",
            "path",
            "revision",
            "prune",
            "sync_interval",
            "conflict_strategy",
            "auth_method",
            "public_key",
            "host_key_fingerprint",
            "host_key_confirmed",
            "pending_host_key_fingerprint",
            "host_key_scan",
            "host_key_scan_error",
            "webhook_enabled",
            "webhook_url",
            "status",
            "last_sync_at",
            "last_success_at",
            "last_commit_sha",
            "head_sha",
            "next_sync_at",
            "last_error",
            "failure_count",
            "open_conflicts",
            "created",
        ]
        read_only_fields = fields


def _interval(**kwargs):
    return serializers.IntegerField(min_value=MIN_INTERVAL, max_value=MAX_INTERVAL, help_text="seconds", **kwargs)


class RepositoryCreateSerializer(serializers.Serializer):
    name = TextField(max_length=100)
    url = TextField(max_length=500, validators=[validate_url], help_text="ssh://user@host:port/path or git@host:path")
    branch = GitRefField(default="main")
    path = TextField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        validators=[validate_path],
        help_text="sub-directory to read",
    )
    revision = TextField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        validators=[validate_revision],
        help_text="tag or commit to stay on",
    )
    prune = serializers.BooleanField(default=False, help_text="unset on instances the setting keys removed from Git")
    sync_interval = _interval(default=300)
    conflict_strategy = serializers.ChoiceField(choices=ConflictStrategy.choices, default=ConflictStrategy.MANUAL)
    auth_method = serializers.ChoiceField(choices=AuthMethod.choices, default=AuthMethod.GENERATED)
    private_key = TextField(
        required=False,
        allow_blank=True,
        write_only=True,
        trim_whitespace=False,
        max_length=20000,
        validators=[validate_private_key],
        help_text="For auth_method=uploaded: an unencrypted OpenSSH/PEM private key. Stored encrypted; never returned.",
    )
    known_hosts = TextField(
        required=False,
        allow_blank=True,
        max_length=20000,
        help_text="The server's known_hosts line (naming the repository's host); pins its host key at once.",
    )
    host_key_fingerprint = TextField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="Expected SHA256 fingerprint: a worker fetches the host key and pins it only if it matches. "
        "Without it (and without known_hosts) the repository waits for confirm-host-key.",
    )


class RepositoryUpdateSerializer(serializers.Serializer):
    branch = GitRefField(required=False)
    path = TextField(max_length=255, required=False, allow_blank=True, validators=[validate_path])
    revision = TextField(
        max_length=255,
        required=False,
        allow_blank=True,
        validators=[validate_revision],
        help_text="empty: follow the branch",
    )
    prune = serializers.BooleanField(required=False)
    sync_interval = _interval(required=False)
    conflict_strategy = serializers.ChoiceField(choices=ConflictStrategy.choices, required=False)


class HostKeyConfirmSerializer(serializers.Serializer):
    fingerprint = TextField(max_length=100, help_text="The SHA256 fingerprint shown in pending_host_key_fingerprint")


class SyncToRevisionSerializer(serializers.Serializer):
    revision = TextField(
        max_length=255,
        validators=[validate_revision],
        help_text="A tag or a commit SHA (7 to 40 hex digits) of the branch",
    )


class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="Shown this once: paste it into the forge's webhook settings")
    webhook_url = serializers.CharField()


class WebhookAnswerSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="queued or ignored")
    repository = serializers.CharField()
    forge = serializers.CharField()
    event = serializers.CharField()
    ref = serializers.CharField()
    reason = serializers.CharField(required=False)
    after = serializers.CharField(required=False)


class SyncRunSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True, allow_null=True)
    by_instance = serializers.SerializerMethodField()
    status = inline_choice(SyncStatus, read_only=True)

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "repository",
            "status",
            "trigger",
            "commit_sha",
            "revision",
            "dry_run",
            "started_at",
            "finished_at",
            "duration",
            "changes",
            "policy_changes",
            "commands",
            "commands_issued",
            "conflicts_opened",
            "errors",
            "log",
            "by_instance",
        ]

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "object"}},
            "description": "Previews: instance name → the commands a sync would queue for it",
        }
    )
    def get_by_instance(self, run) -> dict:
        if not run.dry_run:
            return {}
        result: dict[str, list] = {}
        for command in run.commands:
            for name in command.get("instances", []):
                result.setdefault(name, []).append({"kind": command["kind"], "params": command["params"]})
        return result


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "nullable": True})
class AnyValueField(serializers.JSONField):
    pass


class ConflictSerializer(serializers.ModelSerializer):
    repository_name = serializers.CharField(source="repository.name", read_only=True)
    level = inline_choice(Level, read_only=True)
    status = inline_choice(ConflictStatus, read_only=True)
    base_value = AnyValueField(read_only=True)
    panel_value = AnyValueField(read_only=True)
    git_value = AnyValueField(read_only=True)
    resolved_value = AnyValueField(read_only=True)

    class Meta:
        model = Conflict
        fields = [
            "id",
            "repository",
            "repository_name",
            "level",
            "target",
            "key",
            "base_present",
            "base_value",
            "panel_present",
            "panel_value",
            "git_present",
            "git_value",
            "commit_sha",
            "detected_at",
            "status",
            "resolution",
            "resolved_value",
            "resolved_at",
            "outcome",
        ]
        extra_kwargs = {"outcome": {"help_text": "How it was closed, in words (blank while open)"}}


class ConflictResolveSerializer(serializers.Serializer):
    resolution = serializers.ChoiceField(choices=Resolution.choices, help_text="panel, git, or custom (with value)")
    value = AnyValueField(required=False, allow_null=True, help_text="For resolution=custom: the value to keep")


class DesiredEntrySerializer(serializers.ModelSerializer):
    value = AnyValueField(allow_null=True)
    level = inline_choice(Level, read_only=True)
    git_base = AnyValueField(read_only=True)
    drifted = serializers.BooleanField(read_only=True)
    repository = serializers.CharField(source="repository.name", read_only=True, default=None, allow_null=True)

    class Meta:
        model = DesiredEntry
        fields = [
            "id",
            "level",
            "target",
            "key",
            "value",
            "present",
            "in_git",
            "git_base",
            "drifted",
            "repository",
            "git_path",
            "git_line",
            "override_accepted",
            "git_synced_at",
            "panel_changed_at",
            "updated",
        ]
        read_only_fields = [
            "present",
            "in_git",
            "git_path",
            "git_line",
            "override_accepted",
            "git_synced_at",
            "panel_changed_at",
            "updated",
        ]
        validators = []  # uniqueness is an upsert in the service


class PlanningQueuedSerializer(serializers.Serializer):
    instances = serializers.IntegerField(help_text="How many instances the edit affects (each is checked)")
    description = serializers.CharField(help_text="The description the queued commands will carry")


class DesiredEntryEditSerializer(DesiredEntrySerializer):
    """An entry as set, and what the edit queued: 202 when a worker is planning the commands (they
    appear in /api/fleet/commands), 200 with `planning` null when the value was already that."""

    planning = serializers.SerializerMethodField()

    class Meta(DesiredEntrySerializer.Meta):
        fields = [*DesiredEntrySerializer.Meta.fields, "planning"]

    @extend_schema_field(PlanningQueuedSerializer(allow_null=True))
    def get_planning(self, entry):
        queued = self.context.get("planning")
        return PlanningQueuedSerializer(queued).data if queued else None


class DesiredEntryWriteSerializer(serializers.Serializer):
    level = inline_choice(Level)
    target = TextField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="group name, key=value tag, or instance name",
    )
    key = TextField(max_length=200, help_text="a setting key, or app:<name>")
    value = AnyValueField(allow_null=True, help_text="setting value (null unsets), or app version / 'absent'")


class EffectiveEntrySerializer(serializers.Serializer):
    key = serializers.CharField()
    value = AnyValueField()
    source = serializers.CharField()


class EffectiveConfigSerializer(serializers.Serializer):
    instance = serializers.CharField()
    entries = EffectiveEntrySerializer(many=True)
    commands_needed = serializers.ListField(child=serializers.DictField())
