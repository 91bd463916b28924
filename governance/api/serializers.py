from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from fleet.api.fields import ScopeSerializer

from .. import evaluators
from ..choices import PolicyState, PolicyType, Severity
from ..models import InstanceCompliance, Policy, PolicyException, Violation


class RulesField(serializers.JSONField):
    """The canonical rules of the policy's type (see docs/governance.md); validated by evaluators.validate_rules."""


class PolicyCompliancePartSerializer(serializers.Serializer):
    score = serializers.FloatField(allow_null=True)
    compliant = serializers.IntegerField()
    noncompliant = serializers.IntegerField()
    exempt = serializers.IntegerField()
    unknown = serializers.IntegerField()


class GitOwnerSerializer(serializers.Serializer):
    repository = serializers.IntegerField()
    repository_name = serializers.CharField()
    path = serializers.CharField()
    commit = serializers.CharField()


class PolicySerializer(serializers.ModelSerializer):
    scope = ScopeSerializer(required=False)
    rules = RulesField()
    severity = serializers.ChoiceField(choices=Severity.choices, read_only=True)
    compliance = serializers.SerializerMethodField()
    git = serializers.SerializerMethodField(help_text="Where the policy lives when a GitOps repository owns it")

    class Meta:
        model = Policy
        fields = [
            "id",
            "name",
            "description",
            "policy_type",
            "severity",
            "rules",
            "enabled",
            "mode",
            "scope",
            "compliance",
            "git",
            "created",
            "updated",
        ]
        read_only_fields = ["created", "updated"]

    @extend_schema_field(PolicyCompliancePartSerializer(allow_null=True))
    def get_compliance(self, obj):
        """None until the policy's first evaluation has counted its scope."""
        pc = getattr(obj, "compliance", None)
        if pc is None:
            return None
        return {
            "score": pc.score,
            "compliant": pc.compliant,
            "noncompliant": pc.noncompliant,
            "exempt": pc.exempt,
            "unknown": pc.unknown,
        }

    @extend_schema_field(GitOwnerSerializer(allow_null=True))
    def get_git(self, obj):
        """None for a policy the panel owns; otherwise it is read-only here (change it in the repository)."""
        if not obj.git_repository_id:
            return None
        repo = obj.git_repository
        return {"repository": repo.pk, "repository_name": repo.name, "path": obj.git_path, "commit": obj.git_commit}

    def validate(self, attrs):
        if self.instance is not None and "policy_type" in attrs and attrs["policy_type"] != self.instance.policy_type:
            raise serializers.ValidationError(
                {"policy_type": "A policy's type cannot change; create a new policy instead."}
            )
        return attrs

    def validate_rules(self, value):
        """Field-level, so that rule problems come together with every other field's (paths below `rules`)."""
        policy_type = getattr(self.instance, "policy_type", None) or self.initial_data.get("policy_type")
        if policy_type not in PolicyType.values:
            return value  # policy_type's own error says it
        return clean_rules(policy_type, value)


def clean_rules(policy_type: str, rules):
    try:
        return evaluators.validate_rules(policy_type, rules)
    except evaluators.RuleError as exc:
        raise serializers.ValidationError(exc.errors) from exc


class RulesRequestSerializer(serializers.Serializer):
    """A would-be policy (type, rules, scope) to preview: the rules checked as on save, errors on `rules`."""

    policy_type = serializers.ChoiceField(choices=PolicyType.choices)
    rules = RulesField()
    scope = ScopeSerializer(required=False)

    def validate(self, attrs):
        try:
            attrs["rules"] = clean_rules(attrs["policy_type"], attrs["rules"])
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"rules": exc.detail}) from exc
        return attrs


class PolicyPreviewRequestSerializer(RulesRequestSerializer):
    policy = serializers.IntegerField(
        required=False, help_text="When editing: the policy being changed (left out of the conflict check)"
    )


class FailureSerializer(serializers.Serializer):
    rule_key = serializers.CharField()
    rule = serializers.CharField()
    evidence = serializers.CharField()


class PreviewInstanceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    failures = FailureSerializer(many=True)


class PolicyPreviewSerializer(serializers.Serializer):
    in_scope = serializers.IntegerField()
    violating = serializers.IntegerField()
    compliant = serializers.IntegerField()
    unknown = serializers.IntegerField()
    severity = serializers.CharField()
    rules = serializers.JSONField()
    conflicts = serializers.ListField(child=serializers.CharField())
    instances = PreviewInstanceSerializer(many=True)


class ViolationSerializer(serializers.ModelSerializer):
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    key = serializers.CharField(read_only=True)

    class Meta:
        model = Violation
        fields = [
            "id",
            "key",
            "policy",
            "policy_name",
            "instance",
            "instance_name",
            "rule_key",
            "rule",
            "evidence",
            "severity",
            "status",
            "first_detected_at",
            "last_seen_at",
            "resolved_at",
            "exception",
        ]
        read_only_fields = fields


class PolicyExceptionSerializer(serializers.ModelSerializer):
    scope = ScopeSerializer()
    status = serializers.SerializerMethodField()
    policy_name = serializers.CharField(source="policy.name", read_only=True)

    class Meta:
        model = PolicyException
        fields = [
            "id",
            "policy",
            "policy_name",
            "rule_key",
            "scope",
            "justification",
            "expires_at",
            "status",
            "created",
            "created_by",
            "revoked_at",
            "revoked_by",
        ]
        read_only_fields = ["created", "created_by", "revoked_at", "revoked_by"]
        extra_kwargs = {"justification": {"required": True}, "expires_at": {"required": True}}

    def get_status(self, obj) -> str:
        from django.utils import timezone

        return obj.status_at(timezone.now())


class InstanceScoreSerializer(serializers.ModelSerializer):
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    evaluated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Null: never evaluated yet")
    states = serializers.SerializerMethodField(help_text="{policy id: compliant | noncompliant | exempt | unknown}")

    state_invalid = serializers.SerializerMethodField(
        help_text="The stored state could not be evaluated (invalid_reason says why): its policies are unknown"
    )

    def get_state_invalid(self, obj) -> bool:
        return bool(obj.invalid_reason)

    def get_states(self, obj) -> dict[str, str]:
        return {pid: PolicyState(code).label for pid, code in obj.state_map.items()}

    class Meta:
        model = InstanceCompliance
        fields = [
            "instance",
            "instance_name",
            "score",
            "met",
            "applicable",
            "exempt",
            "stale",
            "state_invalid",
            "invalid_reason",
            "states",
            "evaluated_at",
        ]


class InstanceScorePageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = InstanceScoreSerializer(many=True)


class FleetComplianceSerializer(serializers.Serializer):
    average = serializers.FloatField(allow_null=True, help_text="Average score of instances with applicable policies")
    scored = serializers.IntegerField()
    full = serializers.IntegerField()
    high = serializers.IntegerField()
    mid = serializers.IntegerField()
    low = serializers.IntegerField()
    unknown = serializers.IntegerField(help_text="Instances offline past the stale threshold: unknown, not scored")
    no_policies = serializers.IntegerField(help_text="Instances without applicable policies: excluded")
    violations = serializers.DictField(child=serializers.IntegerField())


class PolicyScoreSerializer(serializers.Serializer):
    policy_id = serializers.IntegerField()
    policy = serializers.CharField()
    policy_type = serializers.CharField()
    enabled = serializers.BooleanField()
    score = serializers.FloatField(allow_null=True)
    compliant = serializers.IntegerField()
    noncompliant = serializers.IntegerField()
    exempt = serializers.IntegerField()
    unknown = serializers.IntegerField()
    update_timeliness = serializers.DictField(required=False, allow_null=True)


class GroupScoreSerializer(serializers.Serializer):
    group_id = serializers.IntegerField()
    group = serializers.CharField()
    average = serializers.FloatField()
    instances = serializers.IntegerField()


class SnapshotSerializer(serializers.Serializer):
    date = serializers.DateField()
    kind = serializers.CharField()
    label = serializers.CharField()
    group = serializers.IntegerField(source="group_id", allow_null=True)
    policy = serializers.IntegerField(source="policy_id", allow_null=True)
    score = serializers.FloatField(allow_null=True)
    instances = serializers.IntegerField()


class InstanceOnDateSerializer(serializers.Serializer):
    date = serializers.DateField()
    compliant = serializers.BooleanField(allow_null=True)
    score = serializers.FloatField(allow_null=True)
    source = serializers.CharField()
    failing_policy_ids = serializers.ListField(child=serializers.IntegerField())
