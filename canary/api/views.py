from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from common.choices import Role
from fleet.api.mixins import LicensedFeatureMixin
from fleet.choices import ScopeKind
from fleet.scopes import Scope

from .. import selectors, services
from ..choices import SelectionKind
from .serializers import CanaryCreateSerializer, CanaryDetailSerializer, CanaryListSerializer, RollbackSerializer

ERRORS = {
    400: OpenApiResponse(description="Invalid input or refused by pre-flight: `{error, message}`"),
    402: OpenApiResponse(description="The license lacks canary_deployments: `{error: upgrade_required, ...}`"),
    403: OpenApiResponse(description="Your role may not do this"),
}


class CanaryViewSet(LicensedFeatureMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Canary deployments: create, list, status with health metrics, force promote, force rollback."""

    license_feature = services.FEATURE
    write_role = Role.OPERATOR
    queryset = selectors.canary_list()
    serializer_class = CanaryListSerializer
    filterset_fields = ["phase"]

    def _detail(self, deployment, code=status.HTTP_200_OK):
        deployment = selectors.canary_get(deployment.pk)
        data = CanaryDetailSerializer(deployment, context={"status": selectors.canary_status(deployment)}).data
        return Response(data, status=code)

    @extend_schema(
        responses={200: CanaryDetailSerializer, 404: OpenApiResponse(description="No such deployment"), **ERRORS}
    )
    def retrieve(self, request, *args, **kwargs):
        return self._detail(self.get_object())

    @extend_schema(request=CanaryCreateSerializer, responses={201: CanaryDetailSerializer, **ERRORS})
    def create(self, request):
        serializer = CanaryCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        selection = data["canary"]
        deployment = services.canary_create(
            actor=request.user,
            name=data["name"],
            kind=data["change"]["kind"],
            params=data["change"]["params"],
            scope=data.get("scope") or Scope(kind=ScopeKind.ALL),
            selection=SelectionKind.PERCENTAGE if selection.get("percentage") else SelectionKind.INSTANCES,
            percentage=selection.get("percentage"),
            instances=selection.get("instances", ()),
            criteria=data["criteria"],
            success_threshold=data["success_threshold"],
            health_path=data["health_check_url"],
            check_interval=data["check_interval"],
            max_duration=data["max_duration"],
            consecutive_healthy=data["consecutive_healthy_polls"],
            preflight_policy=data["preflight"],
        )
        return self._detail(deployment, status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            200: CanaryDetailSerializer,
            409: OpenApiResponse(description="Not promotable in its phase"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        deployment = services.canary_promote(actor=request.user, deployment=self.get_object())
        return self._detail(deployment)

    @extend_schema(
        request=RollbackSerializer,
        responses={
            200: CanaryDetailSerializer,
            409: OpenApiResponse(description="Not rollbackable in its phase"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        serializer = RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deployment = services.canary_rollback(
            actor=request.user, deployment=self.get_object(), reason=serializer.validated_data["reason"]
        )
        return self._detail(deployment)
