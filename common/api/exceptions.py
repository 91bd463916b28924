from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.exceptions import ApplicationError


def exception_handler(exc, context):
    """Every error becomes JSON with `error` (a code) and `message` (words for a person)."""
    if isinstance(exc, ApplicationError):
        body = {"error": exc.code, "message": exc.message, **exc.extra}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"error": "invalid", "message": _first_message(response.data), "errors": response.data}
    elif isinstance(response.data, dict) and "detail" in response.data:
        code = getattr(exc, "default_code", "error")
        response.data = {"error": code, "message": str(response.data["detail"])}
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = "Bearer"
    return response


def _first_message(data, prefix="") -> str:
    if isinstance(data, dict):
        for key, value in data.items():
            label = "" if key == "non_field_errors" else f"{prefix}{key}: "
            return _first_message(value, label)
    if isinstance(data, list) and data:
        return _first_message(data[0], prefix)
    return f"{prefix}{data}"
