from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from fleet.choices import ScopeKind
from fleet.licensing_store import feature_licensed, require_feature
from fleet.scopes import Scope

from .. import evaluation, selectors, services
from ..choices import SelectionKind
from ..filters import HealthPollFilter
from .serializers import (
    CanaryCreateSerializer,
    CanaryDetailSerializer,
    CanaryListSerializer,
    HealthPollSerializer,
    PauseSerializer,
    RollbackSerializer,
)

ERRORS = {
    400: OpenApiResponse(description="Invalid input or refused by pre-flight: `{error, message, errors}`"),
    402: OpenApiResponse(description="The license lacks canary_deployments: `{error: upgrade_required, ...}`"),
    403: OpenApiResponse(description="Your role may not do this"),
}
CONFLICT = {409: OpenApiResponse(description="Not possible in its phase, or overlapping a running deployment")}
# What needs the license. Reading and stopping a running deployment (rollback, pause) stay possible
# after a downgrade, so nothing is left running that nobody may see or stop.
LICENSED_ACTIONS = {"create", *evaluation.LICENSED_ACTIONS}


class CanaryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Canary deployments: create, list, status with health metrics, every poll, and the actions."""

    write_role = services.ACT_ROLE
    queryset = selectors.canary_list()
    serializer_class = CanaryListSerializer
    filterset_fields = ["phase"]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authenticate and check roles first: 401/403 before 402
        if self.action in LICENSED_ACTIONS:
            require_feature(services.FEATURE)

    def _detail(self, deployment, code=status.HTTP_200_OK):
        deployment = selectors.canary_get(deployment.pk)
        context = {
            "status": selectors.canary_status(deployment),
            "request": self.request,
            "licensed": feature_licensed(services.FEATURE),
            "may_act": self.request.user.has_role(self.write_role),
        }
        return Response(CanaryDetailSerializer(deployment, context=context).data, status=code)

    @extend_schema(summary="List canary deployments, newest first (filter by phase)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Status of a canary deployment: phase, steps, health per round and instance, rollout",
        responses={200: CanaryDetailSerializer, 404: OpenApiResponse(description="No such deployment"), **ERRORS},
    )
    def retrieve(self, request, *args, **kwargs):
        return self._detail(self.get_object())

    @extend_schema(
        summary="Start a canary deployment: the change goes to the canary instances first",
        request=CanaryCreateSerializer,
        responses={201: CanaryDetailSerializer, **ERRORS, **CONFLICT},
    )
    def create(self, request):
        serializer = CanaryCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        selection = data.get("canary") or {}
        deployment = services.canary_create(
            actor=request.user,
            name=data["name"],
            kind=data["change"]["kind"],
            params=data["change"]["params"],
            scope=data.get("scope") or Scope(kind=ScopeKind.ALL),
            selection=SelectionKind.INSTANCES if selection.get("instances") else SelectionKind.PERCENTAGE,
            percentage=selection.get("percentage"),
            instances=selection.get("instances", ()),
            steps=[dict(step) for step in data.get("steps") or ()] or None,
            criteria=data["criteria"],
            success_threshold=data["success_threshold"],
            health_path=data["health_check_url"],
            check_interval=data["check_interval"],
            max_duration=data["max_duration"],
            consecutive_healthy=data["consecutive_healthy_polls"],
            preflight_policy=data["preflight"],
            missing_app_policy=data["missing_app"],
            max_unavailable=data.get("max_unavailable"),
        )
        return self._detail(deployment, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Every health poll of a deployment, newest first",
        parameters=[
            OpenApiParameter("instance", int, description="only this instance (id)"),
            OpenApiParameter("round", int, description="only this round"),
            OpenApiParameter("step", int, description="only polls of instances reached by this step"),
            OpenApiParameter("purpose", str, enum=["preflight", "evaluation", "verification"]),
            OpenApiParameter("healthy", bool),
        ],
        responses={200: HealthPollSerializer(many=True), 404: OpenApiResponse(description="No such deployment")},
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def polls(self, request, pk=None):
        """Every health poll of the deployment, newest first: time, instance, URL, status code or error,
        latency and verdict."""
        deployment = self.get_object()
        found = HealthPollFilter(request.query_params, queryset=selectors.canary_polls(deployment))
        if not found.is_valid():
            raise ValidationError(found.errors)
        page = self.paginate_queryset(found.qs)
        return self.get_paginated_response(HealthPollSerializer(page, many=True).data)

    @extend_schema(
        summary="Promote now: the change goes to every remaining instance in scope",
        request=None,
        responses={200: CanaryDetailSerializer, **CONFLICT, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Force promotion: the change goes to the rest of the scope now, skipping the remaining steps."""
        return self._detail(services.canary_promote(actor=request.user, deployment=self.get_object()))

    @extend_schema(
        summary="Roll back: revert the change on every instance it reached",
        request=RollbackSerializer,
        responses={200: CanaryDetailSerializer, **CONFLICT, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Force rollback of every instance the change reached (allowed without the license)."""
        serializer = RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.canary_rollback(
            actor=request.user, deployment=self.get_object(), reason=serializer.validated_data["reason"]
        )
        return self._detail(deployment)

    @extend_schema(
        summary="Approve the next step of a deployment waiting for approval",
        request=None,
        responses={200: CanaryDetailSerializer, **CONFLICT, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Start the next step of a deployment whose step passed and waits for approval."""
        return self._detail(services.canary_approve(actor=request.user, deployment=self.get_object()))

    @extend_schema(
        summary="Pause: no further instance gets the change until resumed",
        request=PauseSerializer,
        responses={200: CanaryDetailSerializer, **CONFLICT, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Hold the deployment: no further instances, no promotion; health keeps being watched."""
        serializer = PauseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.canary_pause(
            actor=request.user, deployment=self.get_object(), reason=serializer.validated_data["reason"]
        )
        return self._detail(deployment)

    @extend_schema(
        summary="Resume a paused deployment",
        request=None,
        responses={200: CanaryDetailSerializer, **CONFLICT, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Carry on after a pause (the max duration is extended by the time paused)."""
        return self._detail(services.canary_resume(actor=request.user, deployment=self.get_object()))
