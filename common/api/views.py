"""Users (admin), the audit log (read) and one's own notifications."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from common import services
from common.choices import Role
from common.filters import AuditFilterSet
from common.models import AuditEntry, Notification, User

from . import serializers as s

ERROR = OpenApiResponse(description='`{"error": code, "message": words}`')


@extend_schema_view(
    create=extend_schema(request=s.UserCreateSerializer, responses={201: s.UserSerializer, 400: ERROR}),
    partial_update=extend_schema(
        request=s.UserUpdateSerializer,
        responses={200: s.UserSerializer, 400: ERROR},
        summary="Change a user's role or deactivate them (admin)",
    ),
)
class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Users and their roles. Reading needs admin too: the list names every account."""

    queryset = User.objects.order_by("username")
    serializer_class = s.UserSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    action_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}

    def create(self, request, *args, **kwargs):
        serializer = s.UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_create(actor=request.user, **serializer.validated_data)
        return Response(s.UserSerializer(user).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        user = self.get_object()
        serializer = s.UserUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        role, is_active = data.get("role", user.role), data.get("is_active", user.is_active)
        user = services.user_update(actor=request.user, user=user, role=role, is_active=is_active)
        return Response(s.UserSerializer(user).data)


class AuditViewSet(viewsets.ReadOnlyModelViewSet):
    """Every state-changing action, newest first. Filter by actor, action (prefix), object_type, since, until."""

    queryset = AuditEntry.objects.all()
    serializer_class = s.AuditEntrySerializer
    filterset_class = AuditFilterSet


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The signed-in user's own notifications, newest first."""

    serializer_class = s.NotificationSerializer
    action_roles = {"mark_read": Role.VIEWER}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Notification.objects.none()
        return Notification.objects.filter(user=self.request.user)

    @extend_schema(
        request=s.MarkReadSerializer, responses=s.MarkReadResponseSerializer, summary="Mark notifications read"
    )
    @action(detail=False, methods=["post"], url_path="mark-read")
    def mark_read(self, request):
        serializer = s.MarkReadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        marked = services.notifications_mark_read(user=request.user, ids=serializer.validated_data.get("ids"))
        return Response({"marked": marked})
