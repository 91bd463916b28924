"""Agent API: register, heartbeat, fetch commands, report results. Each view calls one service.

Agent views use JSON only, the agent credential only, and throttle per instance ("agent") or per
address ("register"). An instance only ever sees its own runs: every lookup is filtered by it.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api.parsers import StrictJSONParser
from common.exceptions import ApplicationError, PreconditionFailed
from common.liveness import health_report
from common.throttling import ScopedFixedWindowThrottle
from fleet import services

from . import fastlane
from .authentication import AgentCredentialAuthentication, IsAgent
from .serializers import (
    AgentCommandSerializer,
    AgentCommandsResponseSerializer,
    HeartbeatResponseSerializer,
    HeartbeatSerializer,
    RegisterResponseSerializer,
    RegisterSerializer,
    RunReportResponseSerializer,
    RunReportSerializer,
)

ERROR = OpenApiResponse(description='`{"error": code, "message": words}`')


class AgentAPIView(APIView):
    authentication_classes = [AgentCredentialAuthentication]
    permission_classes = [IsAgent]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]
    throttle_classes = [ScopedFixedWindowThrottle]
    throttle_scope = "agent"

    @property
    def instance(self):
        return self.request.user.instance


class RegisterView(AgentAPIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_scope = "register"

    @extend_schema(
        tags=["agent"],
        request=RegisterSerializer,
        auth=[],
        responses={201: RegisterResponseSerializer, 400: ERROR, 429: ERROR},
        summary="Register an instance with a registration token; returns its agent credential once",
    )
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance, credential = services.agent_register(
            **serializer.validated_data, remote_addr=request.META.get("REMOTE_ADDR")
        )
        body = {
            "instance_id": instance.pk,
            "name": instance.name,
            "credential": credential,
            "heartbeat_interval": settings.HEARTBEAT_INTERVAL,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class HeartbeatView(AgentAPIView):
    def dispatch(self, request, *args, **kwargs):
        """An unchanged heartbeat is answered by one UPDATE, before DRF's request machinery. In
        production the WSGI fast lane (config/wsgi.py) has already tried that; here it covers every
        other way in (the test client, a server started without the lane)."""
        if request.method == "POST":
            try:
                body = request.body
            except RequestDataTooBig:
                return _too_large()
            tried = request.META.get(fastlane.TRIED)
            auth = request.META.get("HTTP_AUTHORIZATION", "")
            if not tried and fastlane.unchanged_heartbeat(body, auth, request.META):
                digest = services.heartbeat_digest(body) if body else fastlane.if_match_digest(request.META)
                return _unchanged(digest)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        tags=["agent"],
        request=HeartbeatSerializer,
        parameters=[
            OpenApiParameter(
                "If-Match",
                str,
                OpenApiParameter.HEADER,
                description='Conditional heartbeat: no body, `"<ETag of the last answer>"`: "my state is the one '
                'I sent then". 412 when the panel does not hold it: send the full state.',
            )
        ],
        responses={200: HeartbeatResponseSerializer, 400: ERROR, 401: ERROR, 412: ERROR, 413: ERROR},
        summary="Report the instance's full state; writes only what changed",
    )
    def post(self, request):
        if not request.body:
            if request.META.get("HTTP_IF_MATCH"):
                raise PreconditionFailed(
                    "The panel does not hold the state this heartbeat names (If-Match): send the full state.",
                    code="state_required",
                )
            raise ApplicationError("Send the state as a JSON object.")
        # Validated by the service (fleet.state.validate_heartbeat), the one check every caller gets;
        # HeartbeatSerializer describes the same rules in the schema.
        digest = services.heartbeat_digest(request.body)
        changed = services.heartbeat_record(instance=self.instance, state=request.data, body_digest=digest)
        response = Response({"changed": changed, "heartbeat_interval": settings.HEARTBEAT_INTERVAL})
        response["ETag"] = f'"{digest}"'
        return response


def _unchanged(digest: str) -> JsonResponse:
    response = JsonResponse({"changed": False, "heartbeat_interval": settings.HEARTBEAT_INTERVAL})
    response["ETag"] = f'"{digest}"'
    return response


class CommandsView(AgentAPIView):
    @extend_schema(
        tags=["agent"],
        responses={200: AgentCommandsResponseSerializer, 401: ERROR},
        summary="Take delivery of pending commands (they become running)",
    )
    def get(self, request):
        runs = services.agent_commands_fetch(instance=self.instance)
        return Response({"commands": AgentCommandSerializer(runs, many=True).data})


class RunReportView(AgentAPIView):
    @extend_schema(
        tags=["agent"],
        request=RunReportSerializer,
        responses={200: RunReportResponseSerializer, 400: ERROR, 401: ERROR, 404: ERROR},
        summary="Report progress (status=running) or the result of one of this instance's runs",
    )
    def post(self, request, run_id: int):
        serializer = RunReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.command_run_report(instance=self.instance, run_id=run_id, **serializer.validated_data)
        return Response(RunReportResponseSerializer(run).data)


def _too_large() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = (
        f"The heartbeat is larger than {limit:,} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE): "
        "report fewer apps, settings or updates."
    )
    return JsonResponse({"error": "too_large", "message": message, "errors": {}}, status=413)


def livez(request):
    """For process supervisors (a Kubernetes liveness probe): this web process answers. It checks
    nothing else, so a database outage does not get healthy web processes restarted; /healthz is the
    readiness check. The benchmarks use it as their floor: Django's whole stack, no query."""
    response = JsonResponse({"status": "ok"})
    response["Cache-Control"] = "no-store"
    return response


def healthz(request):
    """For load balancers: each component's state (common.liveness.health_report), no session, nothing
    about the fleet; 503 when the database or the broker is down."""
    status, body = health_report()
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response
