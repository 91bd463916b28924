"""Prometheus exposition at /metrics, written by prometheus_client.

Each app has a custom collector: a `collect()` yielding prometheus_client metric families
(GaugeMetricFamily, CounterMetricFamily) read from the database at scrape time. The list lives in
settings.METRICS_COLLECTORS, so `common` imports no app. Every scrape builds its own
CollectorRegistry: nothing is kept in the process-global registry, and every web worker answers the
same figures (they come from the database, not from per-process counters).
"""

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .services import api_token_authenticate


class _Collector:
    """A METRICS_COLLECTORS entry as a registry collector: its collect() yields metric families."""

    def __init__(self, path: str):
        self.path, self.func = path, import_string(path)

    def collect(self):
        for family in self.func():
            if not isinstance(family, Metric):
                raise TypeError(f"{self.path} yielded {family!r}: a collector yields prometheus_client metric families")
            yield family


def metrics_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)  # collectors are not run at registration
    for path in settings.METRICS_COLLECTORS:
        registry.register(_Collector(path))
    return registry


def render_metrics() -> bytes:
    return generate_latest(metrics_registry())


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


@login_not_required  # a scraper has no session: it sends a bearer token, checked here
def metrics_view(request):
    """Scraped by Prometheus with `Authorization: Bearer <METRICS_TOKEN or a user API token>`."""
    if not _authorized(request):
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
