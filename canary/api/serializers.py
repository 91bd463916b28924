from django.urls import reverse
from rest_framework import serializers

from common.api.fields import TextField
from fleet.api.fields import ScopeSerializer
from fleet.models import Instance

from .. import evaluation
from ..choices import Criterion, MissingAppPolicy, PreflightPolicy
from ..models import CanaryDeployment, CanaryTarget, EvaluationRound, HealthPoll


# Input: types and shapes only. Ranges and everything that depends on other fields or on the fleet are
# checked by canary.services.creation.validate, which reports every problem at once by field path.
class ChangeSerializer(serializers.Serializer):
    kind = TextField(max_length=32, help_text="a command type: update_app, install_app, set_config, …")
    params = serializers.DictField(default=dict)


class CanarySelectionSerializer(serializers.Serializer):
    """Either `{"percentage": 10}` or `{"instances": [3, 7]}`."""

    percentage = serializers.IntegerField(required=False, help_text="1–100 % of the scope")
    instances = serializers.PrimaryKeyRelatedField(queryset=Instance.objects.all(), many=True, required=False)

    def validate(self, attrs):
        if bool(attrs.get("percentage")) == bool(attrs.get("instances")):
            raise serializers.ValidationError("Give either a percentage or a list of instance ids.")
        return attrs


class StepSerializer(serializers.Serializer):
    """`{"percentage": 25}` (a cumulative share of the scope) or `{"instances": [ids]}` (added), optionally
    `"approval": true` to wait for `POST …/approve` once the step passed."""

    percentage = serializers.IntegerField(required=False, help_text="1–100, more than the step before")
    instances = serializers.PrimaryKeyRelatedField(queryset=Instance.objects.all(), many=True, required=False)
    approval = serializers.BooleanField(default=False)


class CanaryCreateSerializer(serializers.Serializer):
    name = TextField(max_length=120, required=False, default="", allow_blank=True)
    change = ChangeSerializer()
    scope = ScopeSerializer(required=False)
    canary = CanarySelectionSerializer(required=False, help_text="the canary group (or give `steps`)")
    steps = serializers.ListField(child=StepSerializer(), required=False, max_length=20)
    criteria = serializers.ListField(
        child=TextField(max_length=32), default=[Criterion.HEALTH_CHECK], help_text=", ".join(Criterion.values)
    )
    success_threshold = serializers.IntegerField(default=100, help_text="1–100 %")
    health_check_url = TextField(default="/health", help_text="a path on the instance, like /health")
    check_interval = serializers.IntegerField(default=30, help_text="seconds, 1–3600")
    max_duration = serializers.IntegerField(default=600, help_text="seconds, at least the check interval")
    consecutive_healthy_polls = serializers.IntegerField(default=1, help_text="1–100")
    preflight = TextField(default=PreflightPolicy.EXCLUDE, help_text="exclude or block")
    missing_app = TextField(
        default=MissingAppPolicy.EXCLUDE, help_text="exclude or refuse: instances in scope that lack the app to change"
    )
    max_unavailable = serializers.IntegerField(required=False, allow_null=True, default=None, help_text="at least 1")

    def validate(self, attrs):
        if not attrs.get("canary") and not attrs.get("steps"):
            raise serializers.ValidationError(
                {
                    "canary": [
                        'Give the canary group, as "canary": {"percentage": 1–100} or {"instances": [instance ids]},'
                        ' or the steps, as "steps": [{"percentage": …}, …].'
                    ]
                }
            )
        return attrs


class HealthPollSerializer(serializers.ModelSerializer):
    instance = serializers.CharField(source="instance.name")
    instance_id = serializers.IntegerField()
    time = serializers.DateTimeField(source="polled_at")
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = HealthPoll
        fields = [
            "time",
            "instance_id",
            "instance",
            "purpose",
            "step",
            "round",
            "url",
            "status_code",
            "error",
            "latency_ms",
            "healthy",
            "verdict",
            "consecutive",
            "reason",
            "failed_criteria",
        ]

    def get_verdict(self, obj) -> str:
        return "healthy" if obj.healthy else "unhealthy"


class TargetSerializer(serializers.ModelSerializer):
    instance_id = serializers.IntegerField()
    instance = serializers.CharField(source="instance.name")
    run_status = serializers.CharField(source="run.status", default=None, allow_null=True)
    run_error = serializers.CharField(source="run.error", default=None, allow_null=True)
    revert_command = serializers.IntegerField(source="revert_command_id", allow_null=True)

    class Meta:
        model = CanaryTarget
        fields = [
            "instance_id",
            "instance",
            "role",
            "step",
            "judged",
            "excluded",
            "exclusion_kind",
            "exclusion_reason",
            "run_status",
            "run_error",
            "revert_command",
            "revert_note",
        ]


class RoundSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvaluationRound
        fields = [
            "purpose",
            "number",
            "step",
            "mode",
            "due_at",
            "started_at",
            "at",
            "duration_ms",
            "total",
            "healthy",
            "passing",
            "healthy_share",
            "threshold_met",
            "decision",
        ]


class StepStatusSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    label = serializers.CharField()
    percentage = serializers.IntegerField(allow_null=True)
    instances = serializers.ListField(child=serializers.IntegerField())
    approval = serializers.BooleanField()
    status = serializers.CharField(help_text="passed, applying, evaluating, awaiting approval, pending, …")
    reached = serializers.IntegerField()


class CanaryListSerializer(serializers.ModelSerializer):
    scope = ScopeSerializer(read_only=True)
    change = serializers.SerializerMethodField()
    canary_count = serializers.IntegerField(read_only=True)
    excluded_count = serializers.IntegerField(read_only=True)
    rollout_count = serializers.IntegerField(read_only=True)
    reached_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = CanaryDeployment
        fields = [
            "id",
            "name",
            "phase",
            "paused",
            "awaiting_approval",
            "current_step",
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
            "reached_count",
            "failure_reason",
        ]

    def get_change(self, obj) -> dict:
        return {"kind": obj.command_kind, "params": obj.command_params, "description": obj.change_label}


class CanaryDetailSerializer(serializers.ModelSerializer):
    """A deployment with its health metrics. `status` is canary.selectors.canary_status(...)."""

    scope = ScopeSerializer(read_only=True)
    change = serializers.SerializerMethodField()
    canary_selection = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()
    health_check_url = serializers.CharField(source="health_path")
    check_interval = serializers.IntegerField(source="check_interval_seconds")
    max_duration = serializers.IntegerField(source="max_duration_seconds")
    consecutive_healthy_polls = serializers.IntegerField(source="consecutive_healthy")
    probe_timeout = serializers.FloatField(read_only=True, help_text="seconds: the setting, at most half the interval")
    preflight = serializers.CharField(source="preflight_policy")
    missing_app = serializers.CharField(source="missing_app_policy")
    actions = serializers.SerializerMethodField()
    health = serializers.SerializerMethodField()
    polls = serializers.SerializerMethodField()
    canary_command = serializers.IntegerField(source="canary_command_id", allow_null=True)
    rollout_command = serializers.IntegerField(source="rollout_command_id", allow_null=True)

    class Meta:
        model = CanaryDeployment
        fields = [
            "id",
            "name",
            "phase",
            "current_step",
            "paused",
            "paused_at",
            "pause_reason",
            "awaiting_approval",
            "change",
            "scope",
            "canary_selection",
            "steps",
            "criteria",
            "success_threshold",
            "health_check_url",
            "check_interval",
            "max_duration",
            "consecutive_healthy_polls",
            "probe_timeout",
            "preflight",
            "missing_app",
            "max_unavailable",
            "created",
            "started_at",
            "step_started_at",
            "evaluation_started_at",
            "decided_at",
            "finished_at",
            "deadline_at",
            "next_round_at",
            "forced",
            "failure_reason",
            "failure_details",
            "rollback_verified",
            "rollback_note",
            "canary_command",
            "rollout_command",
            "actions",
            "health",
            "polls",
        ]

    def get_change(self, obj) -> dict:
        return {"kind": obj.command_kind, "params": obj.command_params, "description": obj.change_label}

    def get_canary_selection(self, obj) -> dict:
        first = obj.stages[0]
        if first.percentage is not None:
            return {"percentage": first.percentage}
        return {"instances": list(first.instances)}

    def get_steps(self, obj) -> list[dict]:
        return StepStatusSerializer(self.context["status"]["steps"], many=True).data

    def get_actions(self, obj) -> dict[str, bool]:
        """Which of promote, rollback, approve, pause, resume the caller may take now: role, state and license."""
        if not self.context.get("may_act", True):
            return dict.fromkeys(evaluation.ACTIONS, False)
        return evaluation.allowed_actions(
            phase=obj.phase,
            paused=obj.paused,
            awaiting_approval=obj.awaiting_approval,
            licensed=self.context.get("licensed", True),
        )

    def get_polls(self, obj) -> str:
        """Every poll: GET this URL (paginated; ?instance=<id>&round=<n>&step=&purpose=&healthy=)."""
        path = reverse("canary-polls", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_health(self, obj) -> dict:
        status = self.context["status"]
        progress = status["rollout_progress"]
        return {
            "healthy_percent": status["healthy_percent"],
            "passing": status["passing"],
            "canary_total": len(status["canary"]),
            "reached_total": len(status["reached"]),
            "poll_count": status["poll_count"],
            "rounds": RoundSerializer(status["rounds"] + status["verification_rounds"], many=True).data,
            "instances": [
                {
                    **TargetSerializer(row["target"]).data,
                    "consecutive_healthy": row["poll"].consecutive if row["poll"] else 0,
                    "latest": HealthPollSerializer(row["poll"]).data if row["poll"] else None,
                }
                for row in status["instances"]
            ],
            "excluded": TargetSerializer(status["excluded"], many=True).data,
            "commands": status["commands"],
            "rollout": {key: value for key, value in progress.items() if key != "failed_targets"}
            | {
                "failures": [{"instance": t.instance.name, "error": t.run.error} for t in progress["failed_targets"]],
                "planned": status["planned_rollout"],
            },
        }


class RollbackSerializer(serializers.Serializer):
    reason = TextField(max_length=500, required=False, default="", allow_blank=True)


class PauseSerializer(serializers.Serializer):
    reason = TextField(max_length=300, required=False, default="", allow_blank=True)
