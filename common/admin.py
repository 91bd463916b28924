from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin

from .models import ApiToken, AuditEntry, Notification, User
from .services import user_unlock


def _unlock(modeladmin, request, usernames) -> None:
    cleared = sum(user_unlock(actor=request.user, username=name) for name in sorted(set(usernames)))
    modeladmin.message_user(
        request, f"Sign-in unlocked ({cleared} failed-attempt record(s) cleared).", messages.SUCCESS
    )


@admin.register(User)
class PanelUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (("Fleet role", {"fields": ("role",)}),)
    list_display = ("username", "email", "role", "is_active", "is_superuser")
    list_filter = ("role", "is_active", "is_superuser")
    actions = ["unlock_sign_in"]

    @admin.action(description="Unlock sign-in (forget failed attempts from every address)", permissions=["change"])
    def unlock_sign_in(self, request, queryset):
        _unlock(self, request, queryset.values_list("username", flat=True))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never added, changed or deleted here: the rows are written by services, which audit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created", "actor_label", "action", "object_type", "object_repr")
    list_filter = ("action", "object_type")
    search_fields = ("actor_label", "object_repr", "action")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created", "user", "level", "title", "read_at")
    list_filter = ("level",)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Who has a token and when it was last used; never the hash. Tokens are made on the API token page or
    with `manage.py create_api_token`, and revoked from Settings › Users (audited there)."""

    list_display = ("user", "key_id", "created", "last_used_at")
    fields = list_display
    search_fields = ("user__username", "key_id")
    list_select_related = ("user",)


@admin.register(AccessAttempt)
class AccessAttemptAdmin(ReadOnlyAdmin):
    """Failed sign-ins per (username, client address) within the lockout period (django-axes). They are
    cleared with the audited Unlock action, here or on the users list, never deleted unaudited."""

    list_display = ("username", "ip_address", "failures_since_start", "attempt_time", "path_info")
    fields = list_display + ("user_agent",)
    search_fields = ("username", "ip_address")
    actions = ["unlock_sign_in"]

    @admin.action(description="Unlock sign-in of these usernames", permissions=["unlock"])
    def unlock_sign_in(self, request, queryset):
        _unlock(self, request, queryset.values_list("username", flat=True))

    def has_unlock_permission(self, request):
        return request.user.has_perm("common.change_user")
