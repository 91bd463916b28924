"""Sign-in lockout, built on django-axes (settings: LOGIN_*, TRUSTED_PROXIES, AXES_*).

Failures are counted per (username, client address) and per username, so a visitor guessing one
user's password locks that pair out and nobody else. The client address is the peer's, or, when the
peer is a trusted proxy, the nearest untrusted address in X-Forwarded-For: a header sent by anyone
else is ignored, so it cannot be forged to dodge or to aim a lockout. Axes' backend and signal
handlers cover every password sign-in (the login page and the admin's); the counts live in the
database (axes.AccessAttempt), shared by every web worker; each failure updates its row under
SELECT ... FOR UPDATE.
"""

import ipaddress
from datetime import timedelta
from functools import lru_cache

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.forms.utils import ErrorDict
from django.shortcuts import render


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(net, strict=False) for net in trusted)


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.TRUSTED_PROXIES)))


def client_address(request) -> str:
    """The address a request came from: REMOTE_ADDR unless that is a trusted proxy; then the right-most
    X-Forwarded-For entry that is not a trusted proxy (entries left of it were written by the client)."""
    peer = request.META.get("REMOTE_ADDR") or ""
    if not _is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled header: count the proxy, never a made-up name
        if not _is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def failure_limit(request, credentials) -> int:
    return settings.LOGIN_MAX_FAILURES


def cool_off(request) -> timedelta:
    return timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)


class LockoutHandler(AxesDatabaseHandler):
    """Axes' database handler with a limit per lockout parameter: LOGIN_MAX_FAILURES for
    (username, address), LOGIN_MAX_FAILURES_PER_USERNAME for the username from any address
    (AXES_LOCKOUT_PARAMETERS lists them in that order). Axes itself has one limit for all."""

    def get_failures(self, request, credentials=None) -> int:
        pair, username = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        if username >= settings.LOGIN_MAX_FAILURES_PER_USERNAME:
            return max(pair, failure_limit(request, credentials))
        return pair


def lockout_message() -> str:
    minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
    return f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}."


def lockout_response(request, original_response=None, credentials=None):
    """The sign-in page again (the admin's sign-in too), 429, the lockout said on the form."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, data={"username": username})
    form.cleaned_data, form._errors = {}, ErrorDict()  # shown as submitted, not validated again
    form.add_error(None, lockout_message())
    context = {"form": form, "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)
