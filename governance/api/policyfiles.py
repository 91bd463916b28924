"""The policy-file endpoints of /api/governance/policies: export, import, versions, compliance-on.

Mixed into PolicyViewSet (governance.api.views). Export is a read (viewer+); import writes (admin).
"""

from datetime import date

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import parsers, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.response import Response

from common.api.parsers import StrictJSONParser
from common.exceptions import ApplicationError
from common.validators import unstorable_reason
from common.yamlfiles import FilesInvalid
from fleet.models import Instance

from ..models import PolicyVersion
from ..policyfiles import format as policy_format
from ..policyfiles.history import compliance_on
from ..policyfiles.plan import policy_files_export, policy_files_import

TRUE = ("1", "true", "yes", "on")


def _read_capped(stream) -> bytes:
    data = stream.read(policy_format.MAX_BYTES + 1) if stream is not None else b""
    if len(data) > policy_format.MAX_BYTES:
        raise ParseError("The body is larger than 10 MB.")
    return data


class YAMLParser(parsers.BaseParser):
    """A policy file (or the export's `policies:` document) as the request body."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        return {"files": {"upload.yaml": _read_capped(stream)}}


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


class ZipParser(parsers.BaseParser):
    """A zip of policies/<name>.yaml files as the request body."""

    media_type = "application/zip"

    def parse(self, stream, media_type=None, parser_context=None):
        return {"zip": _read_capped(stream)}


def files_invalid(exc: FilesInvalid) -> ApplicationError:
    """Every problem in the error envelope: `errors` by file ("line N: why"), and `issues` as a list."""
    errors: dict[str, list[str]] = {}
    for issue in exc.issues:
        errors.setdefault(issue.path, []).append(f"line {issue.line}: {issue.message}")
    return ApplicationError(
        f"{len(exc.issues)} problem(s) in the policy files; nothing was applied: "
        + "; ".join(str(i) for i in exc.issues[:5]),
        errors=errors,
        code="invalid_policy_files",
        extra={"issues": [i.as_dict() for i in exc.issues]},
    )


def request_files(data) -> dict[str, bytes | str]:
    """The files of an import request: a raw YAML or zip body, or JSON {yaml | files | zip_base64}."""
    if not isinstance(data, dict):
        raise ApplicationError("Send policy YAML, a zip, or a JSON object with 'yaml' or 'files'.")
    if "zip" in data:
        return policy_format.read_zip(data["zip"])
    if isinstance(data.get("zip_base64"), str):
        return policy_format.read_zip_base64(data["zip_base64"])
    if isinstance(data.get("yaml"), str):
        return {data.get("filename") or "upload.yaml": data["yaml"]}
    files = data.get("files")
    if isinstance(files, dict) and files and all(isinstance(v, str | bytes) for v in files.values()):
        return files
    raise ApplicationError("Give the policies: 'yaml' (text), 'files' ({path: text}) or 'zip_base64'.", field="yaml")


def flag(request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None and isinstance(request.data, dict):
        value = request.data.get(name)
    return value is True or (isinstance(value, str) and value.lower() in TRUE)


def import_policies(request, *, actor, files) -> dict:
    apply, prune = flag(request, "apply"), flag(request, "prune")
    try:
        plan = policy_files_import(files, actor=actor, apply=apply, prune=prune)
    except FilesInvalid as exc:
        raise files_invalid(exc) from exc
    return {"applied": apply, **plan.summary()}


class ImportResultSerializer(serializers.Serializer):
    applied = serializers.BooleanField(help_text="False: a dry run, nothing was changed")
    created = serializers.ListField(child=serializers.CharField())
    changed = serializers.ListField(child=serializers.DictField(), help_text='[{"name", "fields": [...]}]')
    removed = serializers.ListField(
        child=serializers.CharField(), help_text="Policies not in the import: disabled when prune is set"
    )
    unchanged = serializers.IntegerField()
    missing = serializers.ListField(
        child=serializers.CharField(), help_text="The panel's enabled policies the import does not have"
    )
    prune = serializers.BooleanField()


class PolicyVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyVersion
        fields = [
            "id",
            "number",
            "change",
            "created",
            "actor_label",
            "source",
            "repository_name",
            "commit_sha",
            "git_path",
            "snapshot",
        ]
        read_only_fields = fields


class WaiverPartSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rule_key = serializers.CharField()
    justification = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ComplianceOnSerializer(serializers.Serializer):
    policy = serializers.IntegerField()
    instance = serializers.IntegerField()
    instance_name = serializers.CharField()
    date = serializers.DateField()
    at = serializers.DateTimeField(help_text="The moment answered for: the end of the day (or now, for today)")
    state = serializers.ChoiceField(choices=["compliant", "noncompliant", "exempt", "not_applicable", "unknown"])
    reason = serializers.CharField()
    version = PolicyVersionSerializer(allow_null=True, help_text="The policy version in force at that moment")
    waivers = WaiverPartSerializer(many=True)
    violations = serializers.SerializerMethodField()

    def get_violations(self, obj) -> list[dict]:
        return [
            {"id": v.pk, "rule_key": v.rule_key, "evidence": v.evidence, "first_detected_at": v.first_detected_at}
            for v in obj["violations"]
        ]


class PolicyFilesDocumentSerializer(serializers.Serializer):
    """The YAML export is one document: `policies:` with a list of policy files (governance.policyfiles.format)."""

    policies = serializers.ListField(child=serializers.DictField(), help_text="One mapping per policy file")


class PolicyFilesMixin:
    """Actions on PolicyViewSet; see the module docstring."""

    # Export's ?format=yaml|zip is its own parameter, not DRF's renderer override, for every method of
    # the route (its GET and its OPTIONS): common.api.negotiation.
    format_is_a_parameter = False

    @extend_schema(
        summary="Export every policy as policy-file YAML (one document), or ?format=zip for policies/<name>.yaml",
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["yaml", "zip"])],
        responses={
            (200, "application/yaml"): PolicyFilesDocumentSerializer,
            (200, "application/zip"): OpenApiTypes.BINARY,
        },
    )
    @action(
        detail=False,
        methods=["get"],
        url_path="export",
        pagination_class=None,
        filter_backends=[],
        format_is_a_parameter=True,
    )
    def export(self, request):
        kind = request.query_params.get("format", "yaml")
        if kind not in ("yaml", "zip"):
            raise ApplicationError("format must be yaml or zip.", field="format")
        docs = policy_files_export()
        stamp = timezone.localdate().isoformat()
        if kind == "zip":
            response = HttpResponse(policy_format.render_zip(docs), content_type="application/zip")
            response["Content-Disposition"] = f'attachment; filename="policies-{stamp}.zip"'
            return response
        response = HttpResponse(policy_format.render_all(docs), content_type="application/yaml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="policies-{stamp}.yaml"'
        return response

    @extend_schema(
        summary="Import policy files: a dry run unless ?apply=true; ?prune=true disables policies not in the import",
        request={
            "application/json": OpenApiTypes.OBJECT,
            "application/yaml": OpenApiTypes.STR,
            "application/zip": OpenApiTypes.BINARY,
        },
        parameters=[OpenApiParameter("apply", OpenApiTypes.BOOL), OpenApiParameter("prune", OpenApiTypes.BOOL)],
        responses=ImportResultSerializer,
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[StrictJSONParser, YAMLParser, TextYAMLParser, ZipParser],
    )
    def import_(self, request):
        try:
            files = request_files(request.data)
        except FilesInvalid as exc:
            raise files_invalid(exc) from exc
        return Response(import_policies(request, actor=request.user, files=files))

    @extend_schema(summary="A policy's versions, newest first", responses=PolicyVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def versions(self, request, pk=None):
        policy = self.get_object()
        return Response(PolicyVersionSerializer(policy.versions.order_by("-number"), many=True).data)

    @extend_schema(
        summary="Was an instance compliant with this policy on a day, under which version and waiver",
        parameters=[
            OpenApiParameter("instance", OpenApiTypes.STR, required=True, description="Instance name (or id)"),
            OpenApiParameter("date", OpenApiTypes.DATE, required=True),
        ],
        responses=ComplianceOnSerializer,
    )
    @action(detail=True, methods=["get"], url_path="compliance-on", pagination_class=None, filter_backends=[])
    def compliance_on(self, request, pk=None):
        policy = self.get_object()
        problems = {}
        name = request.query_params.get("instance", "")
        if reason := unstorable_reason(name):
            raise ApplicationError(reason, field="instance")
        instance = Instance.objects.filter(name=name).first()
        if instance is None and name.isascii() and name.isdecimal() and len(name) < 19:
            instance = Instance.objects.filter(pk=int(name)).first()
        if instance is None:
            problems["instance"] = [f"There is no instance '{name}'." if name else "Give an instance name."]
        try:
            day = date.fromisoformat(request.query_params.get("date", ""))
            if day > timezone.localdate():
                problems["date"] = ["The date is in the future."]
        except ValueError:
            problems["date"] = ["date must be YYYY-MM-DD."]
        if problems:
            raise ApplicationError.from_errors(problems)
        return Response(ComplianceOnSerializer(compliance_on(policy, instance, day)).data)
