from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.exceptions import NON_FIELD, ApplicationError, join_path, summarize


def exception_handler(exc, context):
    """Every error becomes the one envelope: `error` (a code), `message` (words), `errors` (per field path)."""
    if isinstance(exc, ApplicationError):
        return Response(exc.as_body(), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):  # DRF reads a JSON body through request.body: Django's cap
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024)
        exc = exceptions.ParseError(
            f"A JSON body larger than {limit:g} MB is not accepted; send policy files as YAML or zip."
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(response.data)
        response.data = {"error": "invalid", "message": summarize(errors), "errors": errors}
    elif isinstance(response.data, dict) and "detail" in response.data:
        code = getattr(exc, "default_code", "error")
        message = str(response.data["detail"])
        path = getattr(exc, "path", None)  # common.api.parsers.HostileJSON names where in the body
        response.data = {"error": code, "message": message, "errors": {path: [message]} if path else {}}
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = "Bearer"
    return response


def flatten_errors(data, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {path: [messages]}: `{"canary": {"instances": [...]}}` → `canary.instances`,
    a list of child errors → `rules.apps[1].min_version`. Errors about a nested object carry its path; about
    the whole request, `non_field_errors`."""
    out: dict[str, list[str]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if key in (NON_FIELD, "__all__"):
                here = prefix or NON_FIELD  # about the object itself: its own path
            else:
                here = join_path(prefix, key if isinstance(key, int) else str(key))  # list items: [i]
            for path, messages in flatten_errors(value, here).items():
                out.setdefault(path, []).extend(messages)
    elif isinstance(data, list):
        if all(not isinstance(item, dict | list) for item in data):
            if data:
                out[prefix] = [str(item) for item in data]
            return out
        for index, item in enumerate(data):
            if not item:
                continue  # DRF puts {} for a child that had no errors
            sub = join_path(prefix, index) if isinstance(item, dict | list) else prefix
            for path, messages in flatten_errors(item, sub).items():
                out.setdefault(path, []).extend(messages)
    elif data not in (None, ""):
        out[prefix] = [str(data)]
    return out
