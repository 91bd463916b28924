"""Fleet REST API: read viewsets plus explicit actions; every write calls a fleet service."""

from datetime import timedelta

from django.db.models import Count, Prefetch
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from common.choices import Role
from common.exceptions import ConflictError
from fleet import selectors, services
from fleet.choices import InstanceStatus, RunStatus
from fleet.filters import CommandFilterSet, CommandRunFilterSet, InstanceFilterSet
from fleet.licensing_store import current_license_status
from fleet.models import CommandRun, Instance, Tag, TokenUse

from . import serializers as s

ERROR = OpenApiResponse(description='`{"error": code, "message": words}`')


@extend_schema_view(
    list=extend_schema(summary="List instances (filter by status, group, tag, os_version, q)"),
    retrieve=extend_schema(summary="An instance with its reported state", responses=s.InstanceDetailSerializer),
    partial_update=extend_schema(
        summary="Change an instance's health address, groups or tags",
        request=s.InstanceUpdateSerializer,
        responses={200: s.InstanceDetailSerializer, 400: ERROR},
    ),
    destroy=extend_schema(summary="Remove an instance from the fleet (its agent can no longer authenticate)"),
)
class InstanceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = s.InstanceSerializer
    filterset_class = InstanceFilterSet
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.instance_list(with_state=self.action != "list")

    def get_serializer_class(self):
        return s.InstanceSerializer if self.action == "list" else s.InstanceDetailSerializer

    def partial_update(self, request, *args, **kwargs):
        instance = self.get_object()
        serializer = s.InstanceUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.instance_update(actor=request.user, instance=instance, **serializer.validated_data)
        return Response(s.InstanceDetailSerializer(self.get_queryset().get(pk=instance.pk)).data)

    def perform_destroy(self, instance):
        services.instance_delete(actor=self.request.user, instance=instance)


class GroupViewSet(viewsets.ModelViewSet):
    serializer_class = s.GroupSerializer
    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.group_list()

    def perform_create(self, serializer):
        serializer.instance = services.group_create(actor=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        group = serializer.instance
        data = serializer.validated_data
        serializer.instance = services.group_update(
            actor=self.request.user,
            group=group,
            name=data.get("name", group.name),
            description=data.get("description", group.description),
        )

    def perform_destroy(self, instance):
        services.group_delete(actor=self.request.user, group=instance)


class TagViewSet(viewsets.ReadOnlyModelViewSet):
    """Tags in use. They are created by setting them on instances or registration tokens."""

    serializer_class = s.TagSerializer
    queryset = Tag.objects.annotate(instance_count=Count("instances")).order_by("key", "value")


@extend_schema_view(
    create=extend_schema(
        summary="Create a registration token; the plaintext is in this response only",
        responses={201: s.RegistrationTokenCreatedSerializer, 400: ERROR},
    ),
    retrieve=extend_schema(summary="A token with its usage history", responses=s.RegistrationTokenDetailSerializer),
)
class RegistrationTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    serializer_class = s.RegistrationTokenSerializer

    def get_queryset(self):
        qs = selectors.registration_token_list()
        if self.action == "retrieve":
            qs = qs.prefetch_related(Prefetch("uses", TokenUse.objects.select_related("instance")))
        return qs

    def get_serializer_class(self):
        return s.RegistrationTokenDetailSerializer if self.action == "retrieve" else s.RegistrationTokenSerializer

    def create(self, request, *args, **kwargs):
        serializer = s.RegistrationTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, plaintext = services.registration_token_create(actor=request.user, **serializer.validated_data)
        token.token = plaintext
        return Response(s.RegistrationTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.RegistrationTokenSerializer, 400: ERROR}, summary="Revoke a token")
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = services.registration_token_revoke(actor=request.user, token=self.get_object())
        return Response(s.RegistrationTokenSerializer(token).data)


@extend_schema_view(
    list=extend_schema(summary="The command queue, newest first, with run counts"),
    retrieve=extend_schema(summary="A command with every run", responses=s.CommandDetailSerializer),
    create=extend_schema(
        summary="Send a command to an instance, groups, a tag filter or the whole fleet (operator)",
        request=s.CommandCreateSerializer,
        responses={201: s.CommandDetailSerializer, 400: ERROR, 403: ERROR},
    ),
)
class CommandViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    serializer_class = s.CommandSerializer
    filterset_class = CommandFilterSet
    action_roles = {"create": Role.OPERATOR}

    def get_queryset(self):
        # Aggregates drop Meta.ordering: order explicitly so pages are stable.
        qs = selectors.command_list().prefetch_related("scope_groups", "scope_instances").order_by("-created", "-id")
        if self.action == "retrieve":
            qs = qs.prefetch_related(
                Prefetch("runs", CommandRun.objects.select_related("instance", "command").order_by("instance__name"))
            )
        return qs

    def get_serializer_class(self):
        return s.CommandDetailSerializer if self.action in ("retrieve", "create") else s.CommandSerializer

    def create(self, request, *args, **kwargs):
        serializer = s.CommandCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        command = services.command_create(
            actor=request.user,
            kind=data["kind"],
            params=data["params"],
            scope=data["scope"],
            description=data["description"],
            timeout_seconds=data.get("timeout_seconds"),
        )
        self.action = "retrieve"
        body = s.CommandDetailSerializer(self.get_queryset().get(pk=command.pk)).data
        return Response(body, status=status.HTTP_201_CREATED)


class CommandRunViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.CommandRunSerializer
    filterset_class = CommandRunFilterSet
    queryset = CommandRun.objects.select_related("instance", "command").order_by("-created", "-id")
    action_roles = {"revert": Role.OPERATOR}

    @extend_schema(
        request=None,
        responses={201: s.CommandDetailSerializer, 409: ERROR},
        summary="Queue the exact inverse of this run on its instance (operator)",
    )
    @action(detail=True, methods=["post"])
    def revert(self, request, pk=None):
        run = self.get_object()
        command = services.command_run_revert(actor=request.user, run=run, require_completed=True)
        if command is None:
            raise ConflictError("This run changed nothing that can be reverted.")
        body = s.CommandDetailSerializer(
            selectors.command_list()
            .prefetch_related("scope_groups", "scope_instances", "runs__instance")
            .get(pk=command.pk)
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class FleetSummaryView(APIView):
    @extend_schema(responses=s.FleetSummarySerializer, summary="Instance counts by status and the queue size")
    def get(self, request):
        return Response(selectors.fleet_summary())


class FleetHealthView(APIView):
    @extend_schema(
        responses=s.FleetHealthSerializer, summary="Is the fleet healthy: offline instances and recent failures"
    )
    def get(self, request):
        summary = selectors.fleet_summary()
        offline = Instance.objects.filter(status=InstanceStatus.OFFLINE).order_by("-last_seen_at", "name")
        failed = CommandRun.objects.filter(
            status=RunStatus.FAILED, finished_at__gte=timezone.now() - timedelta(hours=1)
        ).count()
        if not summary["total"]:
            state = "empty"
        else:
            state = "healthy" if not summary["offline"] and not failed else "degraded"
        body = {
            "status": state,
            "online": summary["online"],
            "offline": summary["offline"],
            "pending": summary["pending"],
            "offline_instances": list(offline.values("id", "name", "last_seen_at")[:100]),
            "failed_runs_last_hour": failed,
        }
        return Response(body)


class LicenseView(APIView):
    """The license in force (anyone signed in) and uploading a new one (admin)."""

    @extend_schema(responses=s.LicenseStatusSerializer, summary="The license in force and the features it grants")
    def get(self, request):
        return Response(_license_body())

    @extend_schema(
        request=s.LicenseUploadSerializer,
        responses={201: s.LicenseStatusSerializer, 400: ERROR, 403: ERROR},
        summary="Upload a license (admin); a license that does not verify changes nothing",
    )
    def post(self, request):
        serializer = s.LicenseUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.license_upload(actor=request.user, text=serializer.validated_data["license"])
        return Response(_license_body(), status=status.HTTP_201_CREATED)


def _license_body() -> dict:
    st = current_license_status()
    info = st.info
    return {
        "state": st.state,
        "plan": st.plan,
        "licensed_plan": info.plan if info else None,
        "customer": info.customer if info else None,
        "expires_at": info.expires_at if info else None,
        "limits": info.limits if info else {},
        "features": st.features,
        "error": st.error,
    }
