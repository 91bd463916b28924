from django.conf import settings
from django.contrib.auth.views import redirect_to_login

# Paths that authenticate on their own (DRF, admin) or must be reachable without a session.
PUBLIC_PREFIXES = ("/api/", "/admin/", "/static/", "/accounts/login/", "/healthz", "/metrics")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


class LoginRequiredMiddleware:
    """Every HTML page needs a signed-in user; the API and admin enforce their own auth."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(PUBLIC_PREFIXES) and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy without inline scripts, plus a few headers Django does not set."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CSP)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response
