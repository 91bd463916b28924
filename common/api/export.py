"""Exports from the API: `GET …/export?format=csv` (or `Accept: text/csv`) streams the CSV of the HTML
list (the same common.tables columns); `?format=json` (the default) a JSON array of the API's own
serializer. Every matching row, no pagination, streamed in chunks so memory stays flat; the filters are
the list's FilterSet, an invalid one a 400 in the error envelope (JSON, whatever format was asked)."""

import json

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from common.sorting import apply_sort, sort_from_request
from common.tables import CHUNK, Table


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` and `Accept: text/csv` through content negotiation; the rows themselves are
    streamed by `export_response`, so this renders only what DRF hands it (never a success)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):  # pragma: no cover - see ExportMixin
        return json.dumps(data, cls=JSONEncoder).encode()


EXPORT_RENDERERS = [JSONRenderer, CSVRenderer]
# Formats whose success is a file the view builds itself; DRF renders only their errors (ExportMixin).
FILE_FORMATS = ("csv", "yaml", "zip")


def export_schema(summary: str, serializer_class, *, parameters=(), sort: dict | None = None):
    """The OpenAPI description of an export action: both media types, the `format` switch and `sort`."""
    extra = [OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="json (default) or csv")]
    if sort:
        keys = sorted(sort)
        extra.append(
            OpenApiParameter(
                "sort",
                OpenApiTypes.STR,
                enum=keys + [f"-{k}" for k in keys],
                description="A column of the list, - for descending (as the page's sortable headers)",
            )
        )
    return extend_schema(
        summary=summary,
        parameters=[*parameters, *extra],
        responses={
            (200, "application/json"): serializer_class(many=True),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The list's CSV, a header row first"),
        },
    )


def sorted_rows(request, queryset, allowed: dict):
    """`?sort=` as on the page's headers; the API refuses a key the list cannot sort by (400, on `sort`)."""
    raw = request.query_params.get("sort", "")
    if raw and raw.lstrip("-") not in allowed:
        raise serializers.ValidationError(
            {"sort": [f"Sort by one of: {', '.join(sorted(allowed))} (- for descending)."]}
        )
    return apply_sort(queryset, sort_from_request(request, allowed), allowed)


def _json_lines(queryset, serializer_class, context):
    yield "["
    first = True
    chunk = []

    def flush(rows):
        nonlocal first
        for item in serializer_class(rows, many=True, context=context).data:
            yield ("" if first else ",") + json.dumps(item, cls=JSONEncoder)
            first = False

    for row in queryset.iterator(chunk_size=CHUNK):
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield from flush(chunk)
            chunk = []
    yield from flush(chunk)
    yield "]"


def export_response(request, queryset, *, table: Table, serializer_class, context=None):
    if getattr(request, "accepted_renderer", None) is not None and request.accepted_renderer.format == "csv":
        return table.csv_response(queryset)
    response = StreamingHttpResponse(
        _json_lines(queryset, serializer_class, context or {"request": request}), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="{table.name}-{timezone.now():%Y%m%d-%H%M}.json"'
    response["Cache-Control"] = "no-store"
    return response


class ExportMixin:
    # For viewsets with an export action: its errors keep the JSON envelope when a file format (CSV,
    # YAML, zip) was asked for: the file itself is an HttpResponse, anything DRF renders is the envelope.
    # (A comment, not a docstring: drf-spectacular would make it the description of every operation.)

    def finalize_response(self, request, response, *args, **kwargs):
        renderer = getattr(request, "accepted_renderer", None)
        if isinstance(response, Response) and renderer is not None and renderer.format in FILE_FORMATS:
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
