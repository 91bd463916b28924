"""Reports in the API: the per-policy / per-group compliance report for a date range (any role)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from ..reports.compliance import compliance_report, parse_range
from ..services.snapshots import snapshot_day


class ReportDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    score = serializers.FloatField(allow_null=True)
    instances = serializers.IntegerField()


class ReportRowSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="the policy or group (null once it was deleted)")
    label = serializers.CharField()
    first = serializers.FloatField(allow_null=True)
    last = serializers.FloatField(allow_null=True)
    average = serializers.FloatField(allow_null=True)
    lowest = serializers.FloatField(allow_null=True)
    change = serializers.FloatField(allow_null=True, help_text="last − first, in points")
    days = ReportDaySerializer(many=True)


class ComplianceReportSerializer(serializers.Serializer):
    kind = serializers.CharField()
    start = serializers.DateField()
    end = serializers.DateField()
    rows = ReportRowSerializer(many=True)


class ComplianceReportView(APIView):
    @extend_schema(
        summary="Compliance per policy or per group over a date range (from the daily snapshots)",
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=["policy", "group"], description="default policy"),
            OpenApiParameter("start", OpenApiTypes.DATE, description="default: 29 days before end"),
            OpenApiParameter("end", OpenApiTypes.DATE, description="default: today"),
        ],
        responses=ComplianceReportSerializer,
    )
    def get(self, request):
        q = request.query_params
        kind, start, end = parse_range(q.get("kind"), q.get("start"), q.get("end"), today=snapshot_day())
        rows = [r.as_dict() for r in compliance_report(kind=kind, start=start, end=end)]
        return Response(ComplianceReportSerializer({"kind": kind, "start": start, "end": end, "rows": rows}).data)
