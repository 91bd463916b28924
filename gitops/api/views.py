from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from common.choices import Role
from common.exceptions import ApplicationError
from common.validators import parse_id
from fleet.api.mixins import LicensedFeatureMixin
from fleet.models import Instance

from .. import selectors, services
from ..choices import DisconnectMode
from ..models import Conflict, SyncRun
from . import serializers as s


class GitOpsAPIMixin(LicensedFeatureMixin):
    license_feature = services.FEATURE
    write_role = Role.ADMIN


class RepositoryViewSet(GitOpsAPIMixin, viewsets.ReadOnlyModelViewSet):
    """GitOps configurations: connected repositories and their sync status."""

    serializer_class = s.RepositorySerializer
    lookup_value_regex = r"\d+"
    action_roles = {"sync": Role.OPERATOR, "sync_to_revision": Role.OPERATOR, "preview": Role.OPERATOR}

    def get_queryset(self):
        return selectors.repository_list()

    def _answer(self, repo, code=status.HTTP_200_OK):
        return Response(self.get_serializer(self.get_queryset().get(pk=repo.pk)).data, status=code)

    @extend_schema(
        request=s.RepositoryCreateSerializer,
        responses={201: s.RepositorySerializer},
        summary="Create GitOps configuration",
    )
    def create(self, request):
        data = s.RepositoryCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repo = services.repository_connect(actor=request.user, **data.validated_data)
        return self._answer(repo, status.HTTP_201_CREATED)

    @extend_schema(request=s.RepositoryUpdateSerializer, responses=s.RepositorySerializer)
    def partial_update(self, request, pk=None):
        repo = self.get_object()
        data = s.RepositoryUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.repository_update(actor=request.user, repository=repo, **data.validated_data)
        return self._answer(repo)

    @extend_schema(
        request=None,
        responses={204: None},
        parameters=[
            OpenApiParameter(
                "entries",
                str,
                enum=DisconnectMode.values,
                description="keep (default): its entries stay as panel-owned; remove: they are deleted",
            )
        ],
    )
    def destroy(self, request, pk=None):
        mode = request.query_params.get("entries", DisconnectMode.KEEP)
        services.repository_delete(actor=request.user, repository=self.get_object(), entries=mode)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: s.RepositorySerializer}, summary="Force sync from repository")
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        repo = services.repository_sync_request(actor=request.user, repository=self.get_object())
        return self._answer(repo, status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=s.SyncToRevisionSerializer,
        responses={202: s.RepositorySerializer},
        summary="Sync to a tag or an earlier commit (pins the repository there)",
    )
    @action(detail=True, methods=["post"], url_path="sync-to-revision")
    def sync_to_revision(self, request, pk=None):
        data = s.SyncToRevisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repo = services.repository_sync_to_revision(
            actor=request.user, repository=self.get_object(), revision=data.validated_data["revision"]
        )
        return self._answer(repo, status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={202: s.SyncRunSerializer},
        summary="Preview a sync: what it would change and queue, applying nothing",
        description="A worker fetches and validates the head; poll GET /api/governance/gitops/runs/{run id} "
        "until its status is no longer 'running'.",
    )
    @action(detail=True, methods=["post"])
    def preview(self, request, pk=None):
        run = services.repository_preview_request(actor=request.user, repository=self.get_object())
        return Response(s.SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={201: s.WebhookSecretSerializer}, summary="Create a new webhook secret")
    @action(detail=True, methods=["post"], url_path="webhook-secret")
    def webhook_secret(self, request, pk=None):
        repo = self.get_object()
        secret = services.repository_webhook_secret_rotate(actor=request.user, repository=repo)
        url = s.RepositorySerializer(repo, context={"request": request}).data["webhook_url"]
        return Response({"secret": secret, "webhook_url": url}, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.ConflictSerializer(many=True), summary="List unresolved conflicts")
    @action(detail=True, methods=["get"], pagination_class=None)
    def conflicts(self, request, pk=None):
        conflicts = selectors.conflicts_open(self.get_object())
        return Response(s.ConflictSerializer(conflicts, many=True).data)

    @extend_schema(responses=s.SyncRunSerializer(many=True), summary="Sync history")
    @action(detail=True, methods=["get"])
    def runs(self, request, pk=None):
        page = self.paginate_queryset(selectors.repository_runs(self.get_object()).defer(None))
        return self.get_paginated_response(s.SyncRunSerializer(page, many=True).data)

    @extend_schema(
        request=None,
        responses={202: s.RepositorySerializer},
        summary="Fetch the server's host key for confirmation (a worker connects; poll host_key_scan)",
    )
    @action(detail=True, methods=["post"], url_path="fetch-host-key")
    def fetch_host_key(self, request, pk=None):
        repo = services.repository_host_key_fetch(actor=request.user, repository=self.get_object())
        return self._answer(repo, status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=s.HostKeyConfirmSerializer, responses=s.RepositorySerializer, summary="Pin the fetched host key"
    )
    @action(detail=True, methods=["post"], url_path="confirm-host-key")
    def confirm_host_key(self, request, pk=None):
        data = s.HostKeyConfirmSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repo = services.repository_host_key_confirm(
            actor=request.user, repository=self.get_object(), **data.validated_data
        )
        return self._answer(repo)


class SyncRunView(GitOpsAPIMixin, APIView):
    """One sync run or preview: poll a preview here until its status is no longer 'running'."""

    @extend_schema(responses=s.SyncRunSerializer, summary="A sync run or preview")
    def get(self, request, pk):
        return Response(s.SyncRunSerializer(get_object_or_404(SyncRun, pk=pk)).data)


class WebhookView(GitOpsAPIMixin, APIView):
    """Push webhooks of GitHub, GitLab and Gitea. Authenticated by the repository's webhook secret (the
    signature headers), not by a user: a wrong or missing signature is 403."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = []  # the body is read raw: the signature covers its exact bytes

    @extend_schema(
        request=None,
        responses={202: s.WebhookAnswerSerializer, 200: s.WebhookAnswerSerializer, 403: OpenApiResponse()},
        summary="Push webhook (GitHub, GitLab, Gitea)",
        auth=[],
    )
    def post(self, request, pk):
        answer = services.webhook_receive(
            repository_id=pk,
            headers=request.headers,
            body=request.body,
            content_type=request.content_type or "",
        )
        code = status.HTTP_202_ACCEPTED if answer["status"] == "queued" else status.HTTP_200_OK
        return Response(answer, status=code)


class ConflictView(GitOpsAPIMixin, APIView):
    """One conflict, open or closed: how it was closed is its status and `outcome` (the list of a
    repository's conflicts has only the open ones)."""

    @extend_schema(responses=s.ConflictSerializer, summary="A conflict, open, resolved or superseded")
    def get(self, request, pk):
        conflict = get_object_or_404(Conflict.objects.select_related("repository"), pk=pk)
        return Response(s.ConflictSerializer(conflict).data)


class ConflictResolveView(GitOpsAPIMixin, APIView):
    """Resolve a conflict: keep the panel value, take Git's, or set another value (admin)."""

    @extend_schema(request=s.ConflictResolveSerializer, responses=s.ConflictSerializer, summary="Resolve a conflict")
    def post(self, request, pk):
        conflict = get_object_or_404(Conflict, pk=pk)
        data = s.ConflictResolveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conflict = services.conflict_resolve(
            actor=request.user,
            conflict=conflict,
            resolution=data.validated_data["resolution"],
            value=data.validated_data.get("value"),
        )
        return Response(s.ConflictSerializer(conflict).data)


class DesiredEntryViewSet(GitOpsAPIMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """The desired-configuration store: key → value at fleet, group, tag or instance level."""

    serializer_class = s.DesiredEntrySerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        params = self.request.query_params
        return selectors.entry_list(level=params.get("level"), target=params.get("target"))

    @extend_schema(
        parameters=[OpenApiParameter("level", str), OpenApiParameter("target", str)],
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @staticmethod
    def _edited(entry, planning):
        """202: the entry is stored and a worker plans the commands; 200: nothing changed."""
        code = status.HTTP_202_ACCEPTED if planning else status.HTTP_200_OK
        return Response(s.DesiredEntryEditSerializer(entry, context={"planning": planning}).data, status=code)

    @extend_schema(
        request=s.DesiredEntryWriteSerializer,
        responses={202: s.DesiredEntryEditSerializer, 200: s.DesiredEntryEditSerializer},
        summary="Set a desired-configuration key (a worker plans the commands for the instances it affects)",
    )
    def create(self, request):
        data = s.DesiredEntryWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._edited(*services.desired_entry_set(actor=request.user, **data.validated_data))

    @extend_schema(
        request=s.DesiredEntryWriteSerializer,
        responses={202: s.DesiredEntryEditSerializer, 200: s.DesiredEntryEditSerializer},
    )
    def update(self, request, pk=None):
        entry = self.get_object()
        if not isinstance(request.data, dict) or "value" not in request.data:
            # Without it the PUT would answer 200 and change nothing: say what is missing instead.
            raise ApplicationError('Send the new value: {"value": …} (null unsets the key).', field="value")
        value = request.data["value"]
        return self._edited(
            *services.desired_entry_set(
                actor=request.user, level=entry.level, target=entry.target, key=entry.key, value=value
            )
        )

    def perform_destroy(self, instance):
        services.desired_entry_delete(actor=self.request.user, entry=instance)

    @extend_schema(
        parameters=[OpenApiParameter("instance", int, required=True)],
        responses=s.EffectiveConfigSerializer,
        summary="An instance's effective desired configuration",
    )
    @action(detail=False, methods=["get"])
    def effective(self, request):
        instance_id = parse_id(request.query_params.get("instance"))
        if not instance_id:
            raise ApplicationError("Pass ?instance=<id>.", field="instance")
        return Response(selectors.effective_config(get_object_or_404(Instance, pk=instance_id)))


__all__ = [
    "RepositoryViewSet",
    "ConflictView",
    "ConflictResolveView",
    "DesiredEntryViewSet",
    "SyncRunView",
    "WebhookView",
]
