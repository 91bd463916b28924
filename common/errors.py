"""Error pages: JSON with the API's envelope under /api/, HTML elsewhere."""

from django.http import JsonResponse
from django.views import defaults


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse({"error": "not_found", "message": "No such endpoint or object.", "errors": {}}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return JsonResponse(
            {"error": "server_error", "message": "Internal error; it has been logged.", "errors": {}}, status=500
        )
    return defaults.server_error(request)


def bad_request(request, exception=None):
    if _is_api(request):
        return JsonResponse(
            {"error": "bad_request", "message": "The request could not be understood.", "errors": {}}, status=400
        )
    return defaults.bad_request(request, exception)
