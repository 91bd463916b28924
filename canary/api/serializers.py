from rest_framework import serializers

from fleet.api.fields import ScopeSerializer
from fleet.choices import CommandType
from fleet.models import Instance

from ..choices import Criterion, PreflightPolicy
from ..models import CanaryDeployment, CanaryTarget, EvaluationRound, HealthPoll


class ChangeSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CommandType.choices)
    params = serializers.DictField(default=dict)


class CanarySelectionSerializer(serializers.Serializer):
    """Either `{"percentage": 10}` or `{"instances": [3, 7]}`."""

    percentage = serializers.IntegerField(min_value=1, max_value=100, required=False)
    instances = serializers.PrimaryKeyRelatedField(queryset=Instance.objects.all(), many=True, required=False)

    def validate(self, attrs):
        if bool(attrs.get("percentage")) == bool(attrs.get("instances")):
            raise serializers.ValidationError("Give either a percentage or a list of instance ids.")
        return attrs


class CanaryCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120, required=False, default="", allow_blank=True)
    change = ChangeSerializer()
    scope = ScopeSerializer(required=False)
    canary = CanarySelectionSerializer()
    criteria = serializers.ListField(
        child=serializers.ChoiceField(choices=Criterion.choices), default=[Criterion.HEALTH_CHECK], allow_empty=False
    )
    success_threshold = serializers.IntegerField(min_value=1, max_value=100, default=100)
    health_check_url = serializers.CharField(max_length=200, default="/health")
    check_interval = serializers.IntegerField(min_value=1, max_value=3600, default=30, help_text="seconds")
    max_duration = serializers.IntegerField(min_value=1, default=600, help_text="seconds")
    consecutive_healthy_polls = serializers.IntegerField(min_value=1, max_value=100, default=1)
    preflight = serializers.ChoiceField(choices=PreflightPolicy.choices, default=PreflightPolicy.EXCLUDE)


class HealthPollSerializer(serializers.ModelSerializer):
    instance = serializers.CharField(source="instance.name")

    class Meta:
        model = HealthPoll
        fields = [
            "instance",
            "purpose",
            "round",
            "polled_at",
            "url",
            "status_code",
            "latency_ms",
            "healthy",
            "reason",
            "failed_criteria",
        ]


class TargetSerializer(serializers.ModelSerializer):
    instance_id = serializers.IntegerField()
    instance = serializers.CharField(source="instance.name")
    run_status = serializers.CharField(source="run.status", default=None)
    run_error = serializers.CharField(source="run.error", default=None)
    revert_command = serializers.IntegerField(source="revert_command_id", allow_null=True)

    class Meta:
        model = CanaryTarget
        fields = [
            "instance_id",
            "instance",
            "role",
            "excluded",
            "exclusion_reason",
            "run_status",
            "run_error",
            "consecutive_healthy",
            "revert_command",
            "revert_note",
        ]


class RoundSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvaluationRound
        fields = ["purpose", "number", "at", "duration_ms", "total", "passing", "healthy_share", "threshold_met"]


class CanaryListSerializer(serializers.ModelSerializer):
    scope = ScopeSerializer(read_only=True)
    change = serializers.SerializerMethodField()
    canary_count = serializers.IntegerField(read_only=True)
    excluded_count = serializers.IntegerField(read_only=True)
    rollout_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = CanaryDeployment
        fields = [
            "id",
            "name",
            "phase",
            "change",
            "scope",
            "criteria",
            "success_threshold",
            "created",
            "started_at",
            "finished_at",
            "canary_count",
            "excluded_count",
            "rollout_count",
            "failure_reason",
        ]

    def get_change(self, obj) -> dict:
        return {"kind": obj.command_kind, "params": obj.command_params, "description": obj.change_label}


class CanaryDetailSerializer(serializers.ModelSerializer):
    """A deployment with its health metrics. `status` is canary.selectors.canary_status(...)."""

    scope = ScopeSerializer(read_only=True)
    change = serializers.SerializerMethodField()
    canary_selection = serializers.SerializerMethodField()
    health_check_url = serializers.CharField(source="health_path")
    check_interval = serializers.IntegerField(source="check_interval_seconds")
    max_duration = serializers.IntegerField(source="max_duration_seconds")
    consecutive_healthy_polls = serializers.IntegerField(source="consecutive_healthy")
    preflight = serializers.CharField(source="preflight_policy")
    health = serializers.SerializerMethodField()
    canary_command = serializers.IntegerField(source="canary_command_id", allow_null=True)
    rollout_command = serializers.IntegerField(source="rollout_command_id", allow_null=True)

    class Meta:
        model = CanaryDeployment
        fields = [
            "id",
            "name",
            "phase",
            "change",
            "scope",
            "canary_selection",
            "criteria",
            "success_threshold",
            "health_check_url",
            "check_interval",
            "max_duration",
            "consecutive_healthy_polls",
            "preflight",
            "created",
            "started_at",
            "evaluation_started_at",
            "decided_at",
            "finished_at",
            "deadline_at",
            "next_poll_at",
            "forced",
            "failure_reason",
            "failure_details",
            "rollback_verified",
            "rollback_note",
            "canary_command",
            "rollout_command",
            "health",
        ]

    def get_change(self, obj) -> dict:
        return {"kind": obj.command_kind, "params": obj.command_params, "description": obj.change_label}

    def get_canary_selection(self, obj) -> dict:
        if obj.canary_percentage:
            return {"percentage": obj.canary_percentage}
        return {"instances": [i.pk for i in obj.canary_requested.all()]}

    def get_health(self, obj) -> dict:
        status = self.context["status"]
        return {
            "healthy_percent": status["healthy_percent"],
            "passing": status["passing"],
            "canary_total": len(status["canary"]),
            "poll_count": status["poll_count"],
            "rounds": RoundSerializer(status["rounds"] + status["verification_rounds"], many=True).data,
            "instances": [
                {
                    **TargetSerializer(row["target"]).data,
                    "latest": HealthPollSerializer(row["poll"]).data if row["poll"] else None,
                }
                for row in status["instances"]
            ],
            "excluded": TargetSerializer([t for t in status["excluded"] if t.role == "canary"], many=True).data,
            "rollout": {key: value for key, value in status["rollout_progress"].items() if key != "failed_targets"}
            | {
                "failures": [
                    {"instance": t.instance.name, "error": t.run.error}
                    for t in status["rollout_progress"]["failed_targets"]
                ],
                "planned": status["planned_rollout"],
            },
        }


class RollbackSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
