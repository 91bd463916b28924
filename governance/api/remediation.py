"""Enforce mode in the API: a policy's mode and safety rails (`/policies/{id}/remediation`), the preview,
resuming after the breaker, and a violation's attempts. Reading (a saved policy's preview too) needs any
role; changing the mode or the rails, previewing unsaved rules and resuming are for admins."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from common.exceptions import ApplicationError
from fleet.scopes import Scope

from ..choices import PolicyMode, VersionSource
from ..models import Policy, RemediationAttempt, RemediationSettings, Violation
from ..remediation import rails as rails_service
from ..remediation import services as remediation
from ..remediation.choices import AttemptOutcome
from .serializers import RulesRequestSerializer, ViolationSerializer


class RemediationSettingsSerializer(serializers.ModelSerializer):
    mode = serializers.ChoiceField(choices=PolicyMode.choices, source="policy.mode")

    class Meta:
        model = RemediationSettings
        fields = ["mode", *rails_service.FIELDS, "paused_at", "pause_reason"]
        read_only_fields = fields


class RemediationStatusSerializer(serializers.Serializer):
    paused = serializers.BooleanField()
    paused_at = serializers.DateTimeField(allow_null=True)
    pause_reason = serializers.CharField()
    in_flight = serializers.IntegerField(help_text="instances with a fix in flight")
    started_last_hour = serializers.IntegerField()
    window_open = serializers.BooleanField()
    next_window = serializers.DateTimeField(allow_null=True)
    fixed = serializers.IntegerField()
    failed = serializers.IntegerField()


class RemediationSerializer(serializers.Serializer):
    settings = RemediationSettingsSerializer()
    status = RemediationStatusSerializer()


def _documented_integer(schema: dict) -> type[serializers.IntegerField]:
    return extend_schema_field(schema)(type("DocumentedInteger", (serializers.IntegerField,), {}))


def _rail(field: str, **kwargs) -> serializers.IntegerField:
    """An integer setting whose bounds the schema documents (rails.NUMBERS) and rails.validate enforces, so
    every problem of a request is reported at once with the same words as the settings page."""
    low, high, optional = rails_service.NUMBERS[field]
    documented = {"type": "integer", "minimum": low, "maximum": high, "nullable": optional}
    return _documented_integer(documented)(required=False, allow_null=optional, **kwargs)


def _weekday() -> serializers.IntegerField:
    return _documented_integer({"type": "integer", "minimum": 0, "maximum": 6, "description": "0 = Monday"})()


class RemediationUpdateSerializer(serializers.Serializer):
    """Any of the settings; those left out keep their value. Validated all at once (errors per field)."""

    mode = serializers.ChoiceField(choices=PolicyMode.choices, required=False)
    max_instances = _rail("max_instances")
    max_percent = _rail("max_percent")
    max_per_hour = _rail("max_per_hour")
    window_days = serializers.ListField(child=_weekday(), required=False)
    window_start = serializers.TimeField(required=False, allow_null=True)
    window_end = serializers.TimeField(required=False, allow_null=True)
    window_timezone = serializers.CharField(required=False)
    max_attempts = _rail("max_attempts")
    backoff_seconds = _rail("backoff_seconds")
    breaker_percent = _rail("breaker_percent")
    breaker_min_attempts = _rail("breaker_min_attempts")
    use_canary = serializers.BooleanField(required=False)
    canary_percentage = _rail("canary_percentage")
    canary_criteria = serializers.ListField(child=serializers.CharField(), required=False)
    canary_check_interval = _rail("canary_check_interval")
    canary_max_duration = _rail("canary_max_duration")


class PreviewCommandSerializer(serializers.Serializer):
    kind = serializers.CharField()
    params = serializers.JSONField()
    command = serializers.CharField(help_text="the command in words")
    count = serializers.IntegerField(help_text="instances that would get it")
    instances = serializers.ListField(child=serializers.CharField(), help_text="their names (the first 50)")


class RemediationPreviewSerializer(serializers.Serializer):
    instances = serializers.IntegerField(help_text="instances that would get at least one command")
    commands = PreviewCommandSerializer(many=True)


class RemediationPreviewRequestSerializer(RulesRequestSerializer):
    """A would-be policy whose enforce-mode commands to preview."""


class AttemptSerializer(serializers.ModelSerializer):
    command_text = serializers.SerializerMethodField()
    run_status = serializers.CharField(source="run.status", default=None, allow_null=True)
    run_error = serializers.CharField(source="run.error", default="", allow_null=True)

    class Meta:
        model = RemediationAttempt
        fields = [
            "id",
            "number",
            "kind",
            "params",
            "command_text",
            "outcome",
            "error",
            "command",
            "run",
            "run_status",
            "run_error",
            "canary_deployment_id",
            "created",
            "finished_at",
        ]
        read_only_fields = fields

    def get_command_text(self, obj) -> str:
        from fleet import commands

        try:
            return commands.describe(obj.kind, obj.params)
        except (KeyError, TypeError):
            return obj.kind


class ViolationRemediationSerializer(serializers.Serializer):
    resolved_by_remediation = serializers.BooleanField()
    attempts = AttemptSerializer(many=True)


def attempts_of(violation: Violation) -> dict:
    attempts = list(violation.remediation_attempts.select_related("run").order_by("number"))
    return {
        "resolved_by_remediation": any(a.outcome == AttemptOutcome.FIXED for a in attempts),
        "attempts": attempts,
    }


def _body(policy: Policy) -> dict:
    return {"settings": remediation.settings_for(policy), "status": remediation.status_of(policy)}


class PolicyRemediationView(APIView):
    """GET: the policy's mode, rails and remediation status. PUT/PATCH (admins): change them."""

    @extend_schema(
        summary="A policy's enforce mode, safety rails and remediation status", responses=RemediationSerializer
    )
    def get(self, request, pk: int):
        policy = get_object_or_404(Policy, pk=pk)
        return Response(RemediationSerializer(_body(policy)).data)

    @extend_schema(
        summary="Set a policy's mode (audit | enforce) and safety rails (admins)",
        request=RemediationUpdateSerializer,
        responses=RemediationSerializer,
    )
    def put(self, request, pk: int):
        policy = get_object_or_404(Policy, pk=pk)
        req = RemediationUpdateSerializer(data=request.data)
        req.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(req.fields))
        if unknown:
            raise ApplicationError.from_errors({key: ["Unknown setting."] for key in unknown})
        rails_service.remediation_update(
            actor=request.user, policy=policy, data=dict(req.validated_data), source=VersionSource.API
        )
        return Response(RemediationSerializer(_body(Policy.objects.get(pk=pk))).data)

    patch = put


class PolicyRemediationPreviewView(APIView):
    """What enforce mode would queue now for a saved policy (waived rules left out)."""

    @extend_schema(
        summary="Preview: which instances would get which commands (nothing is queued)",
        responses=RemediationPreviewSerializer,
    )
    def get(self, request, pk: int):
        policy = get_object_or_404(Policy, pk=pk)
        result = remediation.remediation_preview(
            policy_type=policy.policy_type, rules=policy.rules, scope=policy.scope, policy=policy
        )
        return Response(RemediationPreviewSerializer(result).data)


class RemediationPreviewView(APIView):
    """The same for rules and a scope not saved yet (the policy form, before saving; admins, who edit policies)."""

    @extend_schema(
        summary="Preview the commands enforce mode would queue for unsaved rules and scope",
        request=RemediationPreviewRequestSerializer,
        responses=RemediationPreviewSerializer,
    )
    def post(self, request):
        req = RemediationPreviewRequestSerializer(data=request.data)
        req.is_valid(raise_exception=True)
        d = req.validated_data
        result = remediation.remediation_preview(
            policy_type=d["policy_type"], rules=d["rules"], scope=d.get("scope") or Scope()
        )
        return Response(RemediationPreviewSerializer(result).data)


class PolicyRemediationResumeView(APIView):
    @extend_schema(
        summary="Resume a policy's remediation after a pause (admins)", request=None, responses=RemediationSerializer
    )
    def post(self, request, pk: int):
        policy = get_object_or_404(Policy, pk=pk)
        rails_service.remediation_resume(actor=request.user, policy=policy)
        return Response(RemediationSerializer(_body(policy)).data)


class ViolationRemediationView(APIView):
    @extend_schema(
        summary="A violation's remediation attempts with their command runs", responses=ViolationRemediationSerializer
    )
    def get(self, request, pk: int):
        violation = get_object_or_404(Violation, pk=pk)
        return Response(ViolationRemediationSerializer(attempts_of(violation)).data)


class ViolationDetailSerializer(ViolationSerializer):
    """A violation with its remediation (GET /violations/{id}); the list stays lean."""

    remediation = serializers.SerializerMethodField()

    class Meta(ViolationSerializer.Meta):
        fields = [*ViolationSerializer.Meta.fields, "remediation"]
        read_only_fields = fields

    @extend_schema_field(ViolationRemediationSerializer)
    def get_remediation(self, obj) -> dict:
        return ViolationRemediationSerializer(attempts_of(obj)).data
