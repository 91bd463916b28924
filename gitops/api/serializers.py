from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..choices import AuthMethod, ConflictStatus, ConflictStrategy, Level, RepositoryStatus, Resolution, SyncStatus
from ..models import Conflict, DesiredEntry, Repository, SyncRun


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

    class Meta:
        model = Repository
        fields = [
            "id",
            "name",
            "url",
            "branch",
            "sync_interval",
            "conflict_strategy",
            "auth_method",
            "public_key",
            "host_key_fingerprint",
            "host_key_confirmed",
            "pending_host_key_fingerprint",
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


class RepositoryCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=500, help_text="ssh://user@host:port/path or git@host:path")
    branch = serializers.CharField(max_length=200, default="main")
    sync_interval = serializers.IntegerField(min_value=30, default=300, help_text="seconds")
    conflict_strategy = serializers.ChoiceField(choices=ConflictStrategy.choices, default=ConflictStrategy.MANUAL)
    auth_method = serializers.ChoiceField(choices=AuthMethod.choices, default=AuthMethod.GENERATED)
    private_key = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        trim_whitespace=False,
        help_text="For auth_method=uploaded: an unencrypted OpenSSH/PEM private key. Stored encrypted; never returned.",
    )
    known_hosts = serializers.CharField(
        required=False, allow_blank=True, help_text="A known_hosts line for the server; pins its host key at once."
    )
    host_key_fingerprint = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Expected SHA256 fingerprint; the fetched host key is pinned only if it matches. "
        "Without it (and without known_hosts) the repository waits for confirm-host-key.",
    )


class RepositoryUpdateSerializer(serializers.Serializer):
    branch = serializers.CharField(max_length=200)
    sync_interval = serializers.IntegerField(min_value=30)
    conflict_strategy = serializers.ChoiceField(choices=ConflictStrategy.choices)


class HostKeyConfirmSerializer(serializers.Serializer):
    fingerprint = serializers.CharField(help_text="The SHA256 fingerprint shown in pending_host_key_fingerprint")


class SyncRunSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True, allow_null=True)
    status = inline_choice(SyncStatus, read_only=True)

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "repository",
            "status",
            "trigger",
            "commit_sha",
            "started_at",
            "finished_at",
            "duration",
            "changes",
            "commands",
            "commands_issued",
            "conflicts_opened",
            "errors",
            "log",
        ]


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
        ]


class ConflictResolveSerializer(serializers.Serializer):
    resolution = serializers.ChoiceField(choices=Resolution.choices, help_text="panel, git, or custom (with value)")
    value = AnyValueField(required=False, allow_null=True, help_text="For resolution=custom: the value to keep")


class DesiredEntrySerializer(serializers.ModelSerializer):
    value = AnyValueField(allow_null=True)
    level = inline_choice(Level, read_only=True)
    git_base = AnyValueField(read_only=True)
    drifted = serializers.BooleanField(read_only=True)
    repository = serializers.CharField(source="repository.name", read_only=True, default=None)

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
            "git_synced_at",
            "panel_changed_at",
            "updated",
        ]
        read_only_fields = ["present", "in_git", "git_synced_at", "panel_changed_at", "updated"]
        validators = []  # uniqueness is an upsert in the service


class DesiredEntryWriteSerializer(serializers.Serializer):
    level = inline_choice(Level)
    target = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="group name, key=value tag, or instance name"
    )
    key = serializers.CharField(max_length=200, help_text="a setting key, or app:<name>")
    value = AnyValueField(allow_null=True, help_text="setting value (null unsets), or app version / 'absent'")


class EffectiveEntrySerializer(serializers.Serializer):
    key = serializers.CharField()
    value = AnyValueField()
    source = serializers.CharField()


class EffectiveConfigSerializer(serializers.Serializer):
    instance = serializers.CharField()
    entries = EffectiveEntrySerializer(many=True)
    commands_needed = serializers.ListField(child=serializers.DictField())
