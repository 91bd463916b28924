from datetime import date

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.export import EXPORT_RENDERERS, ExportMixin, export_response, export_schema, sorted_rows
from common.api.pagination import Pagination
from common.exceptions import ApplicationError
from fleet.models import Instance
from fleet.scopes import Scope

from .. import selectors, services
from ..choices import PolicyMode, VersionSource
from ..filters import ExceptionFilterSet, InstanceScoreFilterSet, PolicyFilterSet, ViolationFilterSet
from ..models import InstanceCompliance, Policy, PolicyException, Violation
from ..tables import SCORE_SORT, VIOLATION_SORT, ScoreTable, ViolationTable
from .policyfiles import PolicyFilesMixin
from .serializers import (
    FleetComplianceSerializer,
    GroupScoreSerializer,
    InstanceOnDateSerializer,
    InstanceScorePageSerializer,
    InstanceScoreSerializer,
    PolicyExceptionSerializer,
    PolicyPreviewRequestSerializer,
    PolicyPreviewSerializer,
    PolicyScoreSerializer,
    PolicySerializer,
    SnapshotSerializer,
    ViolationSerializer,
)


@extend_schema_view(
    list=extend_schema(summary="List policies"),
    retrieve=extend_schema(summary="Get a policy with its compliance"),
    create=extend_schema(summary="Create a policy (refused when it conflicts with another)"),
    update=extend_schema(summary="Replace a policy's name, rules and scope (its type is fixed)"),
    partial_update=extend_schema(summary="Change part of a policy"),
    destroy=extend_schema(summary="Delete a policy (its violations are kept as resolved history)"),
)
class PolicyViewSet(ExportMixin, PolicyFilesMixin, viewsets.ModelViewSet):
    serializer_class = PolicySerializer
    filterset_class = PolicyFilterSet
    queryset = Policy.objects.all()

    def get_queryset(self):
        return selectors.policy_list()

    def perform_create(self, serializer):
        d = serializer.validated_data
        if "policy_type" not in d:
            raise serializers.ValidationError({"policy_type": "This field is required."})
        serializer.instance = services.policy_create(
            actor=self.request.user,
            name=d["name"],
            description=d.get("description", ""),
            policy_type=d["policy_type"],
            rules=d["rules"],
            scope=d.get("scope") or Scope(),
            enabled=d.get("enabled", True),
            mode=d.get("mode", PolicyMode.AUDIT),
            source=VersionSource.API,
        )

    def perform_update(self, serializer):
        policy = serializer.instance
        d = serializer.validated_data
        serializer.instance = services.policy_update(
            actor=self.request.user,
            policy=policy,
            name=d.get("name", policy.name),
            description=d.get("description", policy.description),
            rules=d.get("rules", policy.rules),
            scope=d.get("scope", policy.scope),
            enabled=d.get("enabled", policy.enabled),
            mode=d.get("mode", policy.mode),
            source=VersionSource.API,
        )

    def perform_destroy(self, instance):
        services.policy_delete(actor=self.request.user, policy=instance, source=VersionSource.API)

    @extend_schema(
        summary="Preview a policy without saving: instances in scope and which would violate it",
        request=PolicyPreviewRequestSerializer,
        responses=PolicyPreviewSerializer,
    )
    @action(detail=False, methods=["post"])
    def preview(self, request):
        req = PolicyPreviewRequestSerializer(data=request.data)
        req.is_valid(raise_exception=True)
        d = req.validated_data
        result = services.policy_preview(
            policy_type=d["policy_type"], rules=d["rules"], scope=d.get("scope") or Scope(), exclude_id=d.get("policy")
        )
        return Response(PolicyPreviewSerializer(result).data)

    @extend_schema(summary="Enable a policy", request=None, responses=PolicySerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        policy = services.policy_enable(actor=request.user, policy=self.get_object(), source=VersionSource.API)
        return Response(PolicySerializer(selectors.policy_list().get(pk=policy.pk)).data)

    @extend_schema(summary="Disable a policy", request=None, responses=PolicySerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        policy = services.policy_disable(actor=request.user, policy=self.get_object(), source=VersionSource.API)
        return Response(PolicySerializer(selectors.policy_list().get(pk=policy.pk)).data)


@extend_schema_view(
    list=extend_schema(summary="List violations (filter by severity, status, policy, group, tag, instance)"),
    retrieve=extend_schema(summary="Get one violation with its remediation attempts"),
)
class ViolationViewSet(ExportMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = ViolationSerializer
    filterset_class = ViolationFilterSet
    queryset = Violation.objects.all()

    def get_queryset(self):
        return selectors.violation_list()

    @export_schema(
        "Export the filtered violations, every page, as JSON or CSV (?format=csv: the violations page's CSV)",
        ViolationSerializer,
        sort=VIOLATION_SORT,
    )
    @action(detail=False, renderer_classes=EXPORT_RENDERERS, pagination_class=None)
    def export(self, request):
        qs = sorted_rows(request, self.filter_queryset(self.get_queryset()), VIOLATION_SORT)
        return export_response(request, qs, table=ViolationTable(), serializer_class=ViolationSerializer)

    def get_serializer_class(self):
        from .remediation import ViolationDetailSerializer  # with its remediation attempts (enforce mode)

        return ViolationDetailSerializer if self.action == "retrieve" else ViolationSerializer


@extend_schema_view(
    list=extend_schema(summary="List exceptions (waivers)"),
    retrieve=extend_schema(summary="Get an exception"),
    create=extend_schema(
        summary="Exempt an instance, group or tag scope from a policy or one rule (justification and expiry required)"
    ),
)
class PolicyExceptionViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = PolicyExceptionSerializer
    filterset_class = ExceptionFilterSet
    queryset = PolicyException.objects.all()

    def get_queryset(self):
        return selectors.exception_list()

    def perform_create(self, serializer):
        d = serializer.validated_data
        serializer.instance = services.exception_create(
            actor=self.request.user,
            policy=d["policy"],
            rule_key=d.get("rule_key", ""),
            scope=d["scope"],
            justification=d["justification"],
            expires_at=d["expires_at"],
        )

    @extend_schema(
        summary="Revoke an exception: its violations re-open if still failing",
        request=None,
        responses=PolicyExceptionSerializer,
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        exception = services.exception_revoke(actor=request.user, exception=self.get_object())
        return Response(PolicyExceptionSerializer(exception).data)


class ComplianceSummaryView(APIView):
    """GET /api/governance/compliance: the fleet's average score, its breakdown and violation counts."""

    @extend_schema(summary="Fleet compliance summary", responses=FleetComplianceSerializer)
    def get(self, request):
        data = selectors.fleet_compliance()
        data["violations"] = selectors.violation_counts()
        return Response(FleetComplianceSerializer(data).data)


SCORE_FILTERS = [
    OpenApiParameter("group", OpenApiTypes.INT),
    OpenApiParameter("tag", OpenApiTypes.STR),
    OpenApiParameter("below", OpenApiTypes.NUMBER),
]


def _filtered_scores(request):
    filterset = InstanceScoreFilterSet(request.query_params or None, queryset=InstanceCompliance.objects.all())
    if filterset.is_bound and not filterset.is_valid():
        raise serializers.ValidationError(filterset.errors)
    return selectors.instance_scores(queryset=filterset.qs)


class ComplianceViewSet(ExportMixin, viewsets.GenericViewSet):
    """Compliance scores per instance, per policy, per group, and history."""

    queryset = InstanceCompliance.objects.all()
    serializer_class = InstanceScoreSerializer
    filterset_class = None
    filter_backends: list = []
    pagination_class = None  # the summary is one object; `instances` pages itself

    @extend_schema(
        summary="Per-instance scores, lowest first",
        parameters=SCORE_FILTERS,
        responses=InstanceScorePageSerializer,
    )
    @action(detail=False)
    def instances(self, request):
        qs = _filtered_scores(request)
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(InstanceScoreSerializer(page, many=True).data)

    @export_schema(
        "Export the per-instance scores, every instance, as JSON or CSV (?format=csv: the scores page's CSV)",
        InstanceScoreSerializer,
        parameters=SCORE_FILTERS,
        sort=SCORE_SORT,
    )
    @action(detail=False, url_path="instances/export", renderer_classes=EXPORT_RENDERERS)
    def instances_export(self, request):
        qs = sorted_rows(request, _filtered_scores(request), SCORE_SORT)
        return export_response(request, qs, table=ScoreTable(), serializer_class=InstanceScoreSerializer)

    @extend_schema(
        operation_id="governance_compliance_instance_detail",
        summary="One instance's score; with ?date=YYYY-MM-DD, whether it was compliant on that day",
        parameters=[OpenApiParameter("date", OpenApiTypes.DATE)],
        # Two shapes: the current score, or with ?date= that day's record.
        responses=PolymorphicProxySerializer(
            component_name="InstanceComplianceOrDay",
            serializers=[InstanceScoreSerializer, InstanceOnDateSerializer],
            resource_type_field_name=None,
        ),
    )
    @action(detail=False, url_path=r"instances/(?P<instance_id>\d+)")
    def instance(self, request, instance_id=None):
        instance = get_object_or_404(Instance, pk=instance_id)
        if request.query_params.get("date"):
            try:
                day = date.fromisoformat(request.query_params["date"])
            except ValueError:
                raise ApplicationError("date must be YYYY-MM-DD.", field="date")
            return Response(InstanceOnDateSerializer(selectors.instance_compliance_on(instance, day)).data)
        standing = InstanceCompliance.objects.filter(instance=instance).select_related("instance").first()
        if standing is None:
            return Response(
                {
                    "instance": instance.pk,
                    "instance_name": instance.name,
                    "score": None,
                    "met": 0,
                    "applicable": 0,
                    "exempt": 0,
                    "stale": False,
                    "state_invalid": False,
                    "invalid_reason": "",
                    "states": {},
                    "evaluated_at": None,
                }
            )
        return Response(InstanceScoreSerializer(standing).data)

    @extend_schema(
        summary="Per-policy compliance: % of scoped instances passing", responses=PolicyScoreSerializer(many=True)
    )
    @action(detail=False)
    def policies(self, request):
        rows = selectors.policy_scores()
        policies = {p.pk: p for p in Policy.objects.filter(policy_type="update_rules")}
        for row in rows:
            if row["policy_id"] in policies:
                row["update_timeliness"] = selectors.update_rule_timeliness(policies[row["policy_id"]])
        return Response(PolicyScoreSerializer(rows, many=True).data)

    @extend_schema(summary="Average score per group", responses=GroupScoreSerializer(many=True))
    @action(detail=False)
    def groups(self, request):
        return Response(GroupScoreSerializer(selectors.group_scores(), many=True).data)

    @extend_schema(
        summary="Daily snapshots of fleet, group and policy scores",
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=["fleet", "group", "policy"]),
            OpenApiParameter("days", OpenApiTypes.INT),
        ],
        responses=SnapshotSerializer(many=True),
    )
    @action(detail=False)
    def history(self, request):
        kind = request.query_params.get("kind", "fleet")
        if kind not in ("fleet", "group", "policy"):
            raise ApplicationError("kind must be fleet, group or policy.")
        days = request.query_params.get("days", "30")
        if not days.isdecimal() or not 1 <= int(days) <= 3650:
            raise ApplicationError("days must be a whole number between 1 and 3650.")
        return Response(SnapshotSerializer(selectors.compliance_trend(days=int(days), kind=kind), many=True).data)
