"""Django admin. The private key is never a field here; conflicts are resolved through the service."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from common.exceptions import ApplicationError

from . import services
from .choices import ConflictStatus, Resolution
from .models import Conflict, DesiredEntry, Repository, SyncRun
from .repoformat import parse_value_text, validate_value


def _require_fleet_admin(request):
    if not request.user.has_role("admin"):
        raise PermissionDenied("Resolving GitOps conflicts needs the Admin role.")


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "url",
        "branch",
        "status",
        "last_commit_sha",
        "last_sync_at",
        "next_sync_at",
        "conflict_strategy",
    )
    list_filter = ("status", "conflict_strategy")
    search_fields = ("name", "url")
    # Connect repositories in the GitOps pages (key generation, host key confirmation); the admin only shows them.
    fields = (
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
        "host_key_scan",
        "webhook_enabled",
        "status",
        "last_commit_sha",
        "head_sha",
        "last_sync_at",
        "last_success_at",
        "next_sync_at",
        "failure_count",
        "last_error",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Disconnect on the GitOps page: it asks whether to keep or remove the repository's entries and
        # audits it. A bare delete here would leave them half-owned (Git's base without a repository).
        return False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ("id", "repository", "status", "dry_run", "trigger", "commit_sha", "started_at", "commands_issued")
    list_filter = ("status", "dry_run", "repository")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DesiredEntry)
class DesiredEntryAdmin(admin.ModelAdmin):
    list_display = (
        "level",
        "target",
        "key",
        "value",
        "present",
        "repository",
        "git_base",
        "git_path",
        "panel_changed_at",
    )
    list_filter = ("level", "repository", "in_git", "present")
    search_fields = ("target", "key")

    def has_add_permission(self, request):
        return False  # the desired-configuration editor goes through the service (commands, audit)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # removing a Git-owned key must leave a tombstone for the strategy: the editor does


class ConflictResolveForm(forms.ModelForm):
    """The change form of an open conflict: pick the value to keep, or type another."""

    choice = forms.ChoiceField(label="Resolution", choices=Resolution.choices, widget=forms.RadioSelect)
    custom_value = forms.CharField(label="Other value", required=False, help_text='YAML: false, 22, "1.4.2"')

    class Meta:
        model = Conflict
        fields = []

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("choice") == Resolution.CUSTOM:
            # The service's own rules, so that a value it would refuse is this field's error (not a
            # "changed successfully" page with an error message beside it).
            try:
                parsed = parse_value_text(cleaned.get("custom_value") or "")
                cleaned["parsed_value"] = validate_value(self.instance.key, parsed)[1]
            except ValueError as exc:
                self.add_error("custom_value", str(exc))
        return cleaned


@admin.register(Conflict)
class ConflictAdmin(admin.ModelAdmin):
    list_display = ("key", "scope_label", "repository", "base", "panel", "git", "status", "outcome", "detected_at")
    list_filter = ("status", "repository")
    search_fields = ("key", "target")
    actions = ["keep_panel_value", "take_git_value"]
    form = ConflictResolveForm
    readonly_fields = (
        "repository",
        "level",
        "target",
        "key",
        "base",
        "panel",
        "git",
        "commit_sha",
        "detected_at",
        "status",
        "outcome",
        "resolution",
        "resolved_value",
        "resolved_at",
        "resolved_by",
    )

    @staticmethod
    def _show(present, value):
        return json.dumps(value) if present else "(absent)"

    @admin.display(description="Base (last from Git)")
    def base(self, obj):
        return self._show(obj.base_present, obj.base_value)

    @admin.display(description="Panel value")
    def panel(self, obj):
        return self._show(obj.panel_present, obj.panel_value)

    @admin.display(description="Git value")
    def git(self, obj):
        return self._show(obj.git_present, obj.git_value)

    def get_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if obj is not None and obj.status == ConflictStatus.OPEN:
            fields[7:7] = ["choice", "custom_value"]
        return fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or obj.status == ConflictStatus.OPEN)

    def save_model(self, request, obj, form, change):
        _require_fleet_admin(request)
        try:
            services.conflict_resolve(
                actor=request.user,
                conflict=obj,
                resolution=form.cleaned_data["choice"],
                value=form.cleaned_data.get("parsed_value"),
            )
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def save_related(self, request, form, formsets, change):
        pass  # nothing to save besides what the service wrote

    def _resolve_all(self, request, queryset, resolution):
        _require_fleet_admin(request)
        done = 0
        for conflict in queryset.filter(status=ConflictStatus.OPEN):
            try:
                services.conflict_resolve(actor=request.user, conflict=conflict, resolution=resolution)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{conflict}: {exc.message}", level=messages.ERROR)
        self.message_user(request, f"Resolved {done} conflict(s).", level=messages.SUCCESS)

    @admin.action(description="Resolve: keep the panel value", permissions=["change"])
    def keep_panel_value(self, request, queryset):
        self._resolve_all(request, queryset, Resolution.PANEL)

    @admin.action(description="Resolve: take the Git value", permissions=["change"])
    def take_git_value(self, request, queryset):
        self._resolve_all(request, queryset, Resolution.GIT)
