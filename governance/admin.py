from django.contrib import admin, messages

from . import services
from .models import (
    ComplianceDigest,
    ComplianceSnapshot,
    InstanceCompliance,
    Policy,
    PolicyException,
    PolicyVersion,
    RemediationAttempt,
    RemediationSettings,
    Violation,
)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "policy_type", "enabled", "scope_kind", "updated")
    list_filter = ("policy_type", "enabled", "scope_kind")
    search_fields = ("name", "description")
    actions = ["enable", "disable"]

    def has_add_permission(self, request):
        return False  # policies are created through the service (validation, conflict check, evaluation)

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Enable selected policies")
    def enable(self, request, queryset):
        for policy in queryset:
            try:
                services.policy_enable(actor=request.user, policy=policy, source="ui")
            except services.ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)

    @admin.action(description="Disable selected policies")
    def disable(self, request, queryset):
        for policy in queryset:
            self._call(request, services.policy_disable, policy)

    def _call(self, request, service, policy):
        """A refusal (e.g. a policy a GitOps repository owns: 409) is a message, not an error page."""
        try:
            service(actor=request.user, policy=policy, source="ui")
        except services.ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_model(self, request, obj):
        self._call(request, services.policy_delete, obj)

    def delete_queryset(self, request, queryset):
        for policy in queryset:
            self._call(request, services.policy_delete, policy)


@admin.register(Violation)
class ViolationAdmin(admin.ModelAdmin):
    list_display = ("policy_name", "instance", "severity", "status", "evidence", "first_detected_at", "resolved_at")
    list_filter = ("severity", "status")
    search_fields = ("policy_name", "evidence", "instance__name")
    list_select_related = ("instance",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PolicyException)
class PolicyExceptionAdmin(admin.ModelAdmin):
    list_display = ("policy", "rule_key", "scope_kind", "expires_at", "revoked_at", "created_by")
    list_filter = ("scope_kind",)
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected exceptions")
    def revoke(self, request, queryset):
        for exception in queryset:
            try:
                services.exception_revoke(actor=request.user, exception=exception)
            except services.ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)


@admin.register(InstanceCompliance)
class InstanceComplianceAdmin(admin.ModelAdmin):
    list_display = ("instance", "score", "met", "applicable", "exempt", "stale", "evaluated_at")
    list_filter = ("stale",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ComplianceSnapshot)
class ComplianceSnapshotAdmin(admin.ModelAdmin):
    list_display = ("date", "kind", "label", "score", "instances")
    list_filter = ("kind",)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    """History: read-only (versions are written by the policy services only)."""

    list_display = ("policy_name", "number", "change", "source", "actor_label", "commit_sha", "created")
    list_filter = ("source", "change")
    search_fields = ("policy_name", "commit_sha")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnlyAdmin(admin.ModelAdmin):
    """For inspection only: these rows are written by the remediation and digest services (the rails through
    the policy's Remediation page or the API, which validate them all at once)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RemediationSettings)
class RemediationSettingsAdmin(_ReadOnlyAdmin):
    list_display = ("policy", "max_instances", "max_percent", "max_per_hour", "window_timezone", "paused_at")
    list_filter = ("use_canary",)
    search_fields = ("policy__name", "pause_reason")
    list_select_related = ("policy",)


@admin.register(RemediationAttempt)
class RemediationAttemptAdmin(_ReadOnlyAdmin):
    list_display = ("violation", "policy", "instance", "number", "kind", "outcome", "created", "finished_at")
    list_filter = ("outcome", "kind")
    search_fields = ("policy__name", "instance__name", "error")
    list_select_related = ("violation", "policy", "instance")
    raw_id_fields = ("violation", "policy", "instance", "command", "run")


@admin.register(ComplianceDigest)
class ComplianceDigestAdmin(_ReadOnlyAdmin):
    list_display = ("week", "created", "sent_at", "recipients", "error")
