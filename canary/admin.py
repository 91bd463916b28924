from django.contrib import admin, messages

from common.exceptions import ApplicationError

from . import services
from .models import CanaryDeployment, CanaryTarget, EvaluationRound, HealthPoll


class CanaryTargetInline(admin.TabularInline):
    model = CanaryTarget
    extra = 0
    can_delete = False
    fields = [
        "instance",
        "role",
        "excluded",
        "exclusion_reason",
        "run",
        "revert_command",
        "revert_note",
        "step",
        "judged",
    ]
    readonly_fields = fields


@admin.register(CanaryDeployment)
class CanaryDeploymentAdmin(admin.ModelAdmin):
    list_display = ["__str__", "phase", "current_step", "paused", "command_kind", "success_threshold", "created"]
    list_filter = ["phase", "command_kind"]
    search_fields = ["name", "failure_reason"]
    readonly_fields = [f.name for f in CanaryDeployment._meta.fields]
    inlines = [CanaryTargetInline]
    actions = ["promote", "rollback"]

    def has_add_permission(self, request):
        return False  # the pre-flight and the change are started by services.canary_create only

    @admin.action(description="Force promote to all instances")
    def promote(self, request, queryset):
        self._each(request, queryset, lambda d: services.canary_promote(actor=request.user, deployment=d))

    @admin.action(description="Force rollback")
    def rollback(self, request, queryset):
        self._each(request, queryset, lambda d: services.canary_rollback(actor=request.user, deployment=d))

    def _each(self, request, queryset, fn):
        for deployment in queryset:
            try:
                fn(deployment)
                self.message_user(request, f"{deployment}: done.")
            except ApplicationError as exc:
                self.message_user(request, f"{deployment}: {exc.message}", level=messages.ERROR)


@admin.register(HealthPoll)
class HealthPollAdmin(admin.ModelAdmin):
    list_display = [
        "deployment",
        "instance",
        "purpose",
        "round",
        "polled_at",
        "status_code",
        "latency_ms",
        "healthy",
        "reason",
    ]
    list_filter = ["purpose", "healthy"]
    readonly_fields = [f.name for f in HealthPoll._meta.fields]


@admin.register(EvaluationRound)
class EvaluationRoundAdmin(admin.ModelAdmin):
    list_display = ["deployment", "purpose", "number", "at", "passing", "total", "healthy_share", "threshold_met"]
    readonly_fields = [f.name for f in EvaluationRound._meta.fields]
