from django.contrib import admin

from .models import Command, CommandRun, Group, Instance, License, RegistrationToken, Tag


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("name", "hostname", "address", "os_version", "status", "last_seen_at")
    list_filter = ("status", "groups")
    search_fields = ("name", "hostname")
    # The credential hash is a secret: never shown or editable here.
    exclude = ("agent_secret_hash",)
    # The agent is the source of its reported state: shown, never edited here (an edit would disagree with
    # state_hash/apps_hash/heartbeat_digest, which decide whether the next heartbeat is a change).
    readonly_fields = (
        "agent_key_id",
        "os_version",
        "apps",
        "settings",
        "updates",
        "agent_version",
        "state_hash",
        "apps_hash",
        "heartbeat_digest",
        "state_changed_at",
        "last_seen_at",
    )


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name",)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("key", "value")
    search_fields = ("key", "value")


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "key_id", "use_count", "max_uses", "expires_at", "revoked_at")
    exclude = ("secret_hash",)


class CommandRunInline(admin.TabularInline):
    model = CommandRun
    extra = 0
    fields = ("instance", "status", "delivered_at", "finished_at", "error")
    readonly_fields = fields


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = ("__str__", "source", "created", "created_by")
    list_filter = ("kind", "source")
    inlines = [CommandRunInline]


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    list_display = ("plan", "customer", "expires_at", "uploaded_at")
