"""Prometheus text exposition at /metrics.

Each app contributes a `collect()` returning `[(name, help, type, [(labels dict, value)])]`; the
list of collectors lives in settings.METRICS_COLLECTORS so `common` imports no app.
"""

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.utils.module_loading import import_string

from .services import api_token_authenticate


def _authorized(request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential:
        configured = getattr(settings, "METRICS_TOKEN", "")
        if configured and hmac.compare_digest(configured, credential):
            return True
        token = api_token_authenticate(credential)
        return bool(token and token.user.is_active)
    return bool(request.user.is_authenticated and request.user.is_active)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics() -> str:
    lines = []
    for path in settings.METRICS_COLLECTORS:
        for name, help_text, kind, samples in import_string(path)():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return "\n".join(lines) + "\n"


def metrics_view(request):
    """Scraped by Prometheus with `Authorization: Bearer <METRICS_TOKEN or a user API token>`."""
    if not _authorized(request):
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(render_metrics(), content_type="text/plain; version=0.0.4")
