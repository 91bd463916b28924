from django.db import InterfaceError, OperationalError, close_old_connections
from django.http import HttpResponse, JsonResponse

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


class SecurityHeadersMiddleware:
    """Content-Security-Policy without inline scripts, plus a few headers Django does not set."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CSP)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response


class DatabaseUnavailableMiddleware:
    """A database outage answers 503 with words (JSON for the API), never a traceback; the next
    request after the database is back succeeds (connections are health-checked).

    Listed before Django's LoginRequiredMiddleware: process_view loads the session user first (a
    page request's first database touch), which there would raise outside any view and answer 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        try:
            request.user.is_authenticated  # noqa: B018 - evaluates the lazy user
        except (OperationalError, InterfaceError):
            return database_unavailable_response(request)
        return None

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        return database_unavailable_response(request)


def database_unavailable_response(request):
    close_old_connections()
    message = "The database is unavailable. Try again in a moment."
    if request.path.startswith("/api/") or request.path == "/metrics":
        response = JsonResponse({"error": "database_unavailable", "message": message, "errors": {}}, status=503)
    else:
        response = HttpResponse(
            f"<!doctype html><title>Unavailable</title><h1>Temporarily unavailable</h1><p>{message}</p>", status=503
        )
    response["Retry-After"] = "5"
    return response
