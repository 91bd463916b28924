from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from common.choices import Role
from common.exceptions import ApplicationError
from fleet.api.mixins import LicensedFeatureMixin
from fleet.models import Instance

from .. import selectors, services
from ..models import Conflict, DesiredEntry
from . import serializers as s


class GitOpsAPIMixin(LicensedFeatureMixin):
    license_feature = "gitops"
    write_role = Role.ADMIN


class RepositoryViewSet(GitOpsAPIMixin, viewsets.ReadOnlyModelViewSet):
    """GitOps configurations: connected repositories and their sync status."""

    serializer_class = s.RepositorySerializer
    lookup_value_regex = r"\d+"
    action_roles = {"sync": Role.OPERATOR}

    def get_queryset(self):
        return selectors.repository_list()

    @extend_schema(
        request=s.RepositoryCreateSerializer,
        responses={201: s.RepositorySerializer},
        summary="Create GitOps configuration",
    )
    def create(self, request):
        data = s.RepositoryCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repo = services.repository_connect(actor=request.user, **data.validated_data)
        return Response(
            s.RepositorySerializer(self.get_queryset().get(pk=repo.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=s.RepositoryUpdateSerializer, responses=s.RepositorySerializer)
    def partial_update(self, request, pk=None):
        repo = self.get_object()
        data = s.RepositoryUpdateSerializer(
            data={
                "branch": repo.branch,
                "sync_interval": repo.sync_interval,
                "conflict_strategy": repo.conflict_strategy,
                **request.data,
            }
        )
        data.is_valid(raise_exception=True)
        services.repository_update(actor=request.user, repository=repo, **data.validated_data)
        return Response(s.RepositorySerializer(self.get_queryset().get(pk=repo.pk)).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request, pk=None):
        services.repository_delete(actor=request.user, repository=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: s.RepositorySerializer}, summary="Force sync from repository")
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        repo = services.repository_sync_request(actor=request.user, repository=self.get_object())
        return Response(
            s.RepositorySerializer(self.get_queryset().get(pk=repo.pk)).data, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(responses=s.ConflictSerializer(many=True), summary="List unresolved conflicts")
    @action(detail=True, methods=["get"])
    def conflicts(self, request, pk=None):
        conflicts = selectors.conflicts_open(self.get_object())
        return Response(s.ConflictSerializer(conflicts, many=True).data)

    @extend_schema(responses=s.SyncRunSerializer(many=True), summary="Sync history")
    @action(detail=True, methods=["get"])
    def runs(self, request, pk=None):
        page = self.paginate_queryset(selectors.repository_runs(self.get_object()).defer(None))
        return self.get_paginated_response(s.SyncRunSerializer(page, many=True).data)

    @extend_schema(
        request=None, responses=s.RepositorySerializer, summary="Fetch the server's host key for confirmation"
    )
    @action(detail=True, methods=["post"], url_path="fetch-host-key")
    def fetch_host_key(self, request, pk=None):
        repo = services.repository_host_key_fetch(actor=request.user, repository=self.get_object())
        return Response(s.RepositorySerializer(self.get_queryset().get(pk=repo.pk)).data)

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
        return Response(s.RepositorySerializer(self.get_queryset().get(pk=repo.pk)).data)


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

    @extend_schema(
        request=s.DesiredEntryWriteSerializer,
        responses={201: s.DesiredEntrySerializer},
        summary="Set a desired-configuration key",
    )
    def create(self, request):
        data = s.DesiredEntryWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        entry = services.desired_entry_set(actor=request.user, **data.validated_data)
        return Response(s.DesiredEntrySerializer(entry).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.DesiredEntryWriteSerializer, responses=s.DesiredEntrySerializer)
    def update(self, request, pk=None):
        entry = self.get_object()
        value = request.data.get("value", entry.value) if isinstance(request.data, dict) else entry.value
        entry = services.desired_entry_set(
            actor=request.user, level=entry.level, target=entry.target, key=entry.key, value=value
        )
        return Response(s.DesiredEntrySerializer(entry).data)

    def perform_destroy(self, instance):
        services.desired_entry_delete(actor=self.request.user, entry=instance)

    @extend_schema(
        parameters=[OpenApiParameter("instance", int, required=True)],
        responses=s.EffectiveConfigSerializer,
        summary="An instance's effective desired configuration",
    )
    @action(detail=False, methods=["get"])
    def effective(self, request):
        instance_id = request.query_params.get("instance", "")
        if not instance_id.isdigit():
            raise ApplicationError("Pass ?instance=<id>.")
        return Response(selectors.effective_config(get_object_or_404(Instance, pk=int(instance_id))))


__all__ = ["RepositoryViewSet", "ConflictResolveView", "DesiredEntryViewSet", "DesiredEntry"]
