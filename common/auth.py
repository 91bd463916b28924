"""Login brute-force throttling: after LOGIN_MAX_FAILURES failures for a username or an address,
logins are refused for LOGIN_LOCKOUT_SECONDS. Enforced in the authentication backend, so the login
page, the admin and session logins of the API all share it."""

from django import forms
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver


def _client_ip(request) -> str:
    return (request.META.get("REMOTE_ADDR") or "unknown") if request is not None else "unknown"


def _keys(request, username: str) -> list[str]:
    return [f"login-fail:user:{(username or '').lower()}", f"login-fail:ip:{_client_ip(request)}"]


def is_locked_out(request, username: str) -> bool:
    return any((cache.get(key) or 0) >= settings.LOGIN_MAX_FAILURES for key in _keys(request, username))


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    for key in _keys(request, credentials.get("username", "")):
        cache.add(key, 0, settings.LOGIN_LOCKOUT_SECONDS)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, settings.LOGIN_LOCKOUT_SECONDS)


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is not None and is_locked_out(request, username):
            raise PermissionDenied("locked out")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            cache.delete_many(_keys(request, username))
        return user


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self):
        username = self.cleaned_data.get("username")
        if username and is_locked_out(self.request, username):
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            raise forms.ValidationError(
                f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
                code="locked_out",
            )
        return super().clean()
