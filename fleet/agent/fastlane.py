"""The unchanged heartbeat, answered before Django's request machinery.

Nearly every heartbeat repeats the state the instance reported last time. `unchanged_heartbeat` answers
such a request with one UPDATE (`services.heartbeat_touch`), and `HeartbeatFastLane` (the WSGI
application in config/wsgi.py) calls it before the middleware stack, the URL resolver and DRF run:
those cost more than the work itself, and at one heartbeat per instance per interval they are the
panel's largest load. See docs/decisions.md, "Heartbeat fast lane".

What still applies on the lane, exactly as on the full path:
- the agent credential (its secret's hash is compared in the UPDATE's WHERE clause);
- ALLOWED_HOSTS and SECURE_SSL_REDIRECT (a request failing either is left to Django, which refuses it);
- the per-instance "agent" throttle (same bucket; a throttled request is left to the full path: 429);
- the response headers the middleware would add (computed once, by that middleware's own code).

Everything else (any change of state, a bad credential, malformed JSON, a database error) falls through
to Django unchanged, with the request body intact, and gets the full path's answer and error messages.
"""

import io
import logging
from types import SimpleNamespace

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import connections
from django.http import JsonResponse

from common.throttling import ScopedFixedWindowThrottle
from fleet import services

from .authentication import AgentCredentialAuthentication, AgentPrincipal

logger = logging.getLogger(__name__)

PATH = "/api/agent/heartbeat"
# Set on the WSGI environ once the lane has tried a request, so the view does not try it a second time.
TRIED = "fleet.heartbeat_fast_lane"
DIGEST = "fleet.heartbeat_digest"  # the digest of the state the heartbeat stands for: its ETag


class _AgentScope:
    throttle_scope = "agent"


def if_match_digest(meta: dict) -> str:
    """The digest a conditional heartbeat names (`If-Match: "<sha256 hex>"`), or ""."""
    value = meta.get("HTTP_IF_MATCH", "").strip().removeprefix("W/").strip('"')
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else ""


def unchanged_heartbeat(body: bytes, authorization: str, meta: dict) -> bool:
    """Record the heartbeat if its body is byte for byte the last one stored, or (no body) if `If-Match`
    names that body's digest. True: it was recorded and may be answered `{"changed": false}`; False: the
    full path must handle it (and will give any error)."""
    keyword, _, credential = authorization.partition(" ")
    if keyword != AgentCredentialAuthentication.keyword or not credential or " " in credential:
        return False
    # No parsing and no serializer: heartbeat_touch matches only a body identical to one that was
    # validated and stored before.
    digest = "" if body else if_match_digest(meta)
    if not (body or digest) or not services.heartbeat_touch(credential=credential, body=body, digest=digest):
        return False
    # Authenticated now: count it against the same throttle bucket as the full path.
    principal = SimpleNamespace(pk=AgentPrincipal.throttle_key(credential), is_authenticated=True)
    return ScopedFixedWindowThrottle().allow_request(SimpleNamespace(user=principal, META=meta), _AgentScope)


def _answer_headers(secure: bool) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers the full path sends for an unchanged heartbeat, made once by the same
    middleware classes that add them there."""
    from django.middleware.clickjacking import XFrameOptionsMiddleware
    from django.middleware.security import SecurityMiddleware

    from common.middleware import SecurityHeadersMiddleware

    response = JsonResponse({"changed": False, "heartbeat_interval": settings.HEARTBEAT_INTERVAL})
    request = SimpleNamespace(is_secure=lambda: secure, path=PATH, META={})
    SecurityHeadersMiddleware(lambda _request: response)(request)
    XFrameOptionsMiddleware(lambda _request: response).process_response(request, response)
    SecurityMiddleware(lambda _request: response).process_response(request, response)
    response["Cache-Control"] = "no-store"
    headers = [(name, value) for name, value in response.items() if name.lower() != "content-length"]
    headers.append(("Content-Length", str(len(response.content))))
    return response.content, headers


def _end_request():
    """What Django's request_finished does (close_old_connections): drop a connection that failed or
    outlived CONN_MAX_AGE, and re-arm its health check. Never inside a transaction (tests run in one)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


class HeartbeatFastLane:
    """WSGI wrapper: unchanged heartbeats are answered here, every other request goes to `app`."""

    def __init__(self, app):
        self.app = app
        self._answers: dict[bool, tuple[bytes, list]] = {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            answer = self._try(environ)
            if answer is not None:
                body, headers = answer
                start_response("200 OK", [*headers, ("ETag", f'"{environ[DIGEST]}"')])
                return [body]
        return self.app(environ, start_response)

    def _try(self, environ):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 <= length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return None
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # the full path reads the same bytes
        environ[DIGEST] = services.heartbeat_digest(body) if body else if_match_digest(environ)
        environ[TRIED] = True
        request = WSGIRequest(environ)
        try:
            request.get_host()  # ALLOWED_HOSTS
        except DisallowedHost:
            return None
        secure = request.is_secure()
        if settings.SECURE_SSL_REDIRECT and not secure:
            return None
        try:
            if not unchanged_heartbeat(body, environ.get("HTTP_AUTHORIZATION", ""), environ):
                return None
        except Exception:  # a database error, say: the full path answers it in words
            logger.debug("heartbeat fast lane fell through", exc_info=True)
            return None
        finally:
            _end_request()
        if secure not in self._answers:
            self._answers[secure] = _answer_headers(secure)
        return self._answers[secure]
