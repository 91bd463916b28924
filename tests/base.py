"""Shared test helpers: named personas, license issuing, status assertions that print why."""

import os
import socket
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from fleet.licensing import public_key_text, sign_license

IN_CI = os.environ.get("CI") == "true"


def assert_status(response, expected: int):
    """assert response.status_code == expected, printing the form/serializer errors when it is not."""
    if response.status_code != expected:
        body = getattr(response, "data", None)
        if body is None:
            context = getattr(response, "context", None)
            form = context.get("form") if context else None
            body = form.errors.as_json() if form is not None else response.content[:2000]
        raise AssertionError(f"expected HTTP {expected}, got {response.status_code}: {body}")


def api_key_for(user) -> str:
    """A new API token for `user` (who has none), as the factory fixtures need it: no audit entry."""
    from common.services import _api_token_new

    return _api_token_new(user)


def service_unavailable(what: str):
    """A test needing a missing service fails in CI and skips elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but not reachable")
    pytest.skip(f"{what} not reachable")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class LicenseIssuer:
    """Signs licenses with a key pair made for the test; the panel trusts its public key."""

    def __init__(self):
        self.private_key = Ed25519PrivateKey.generate()
        self.public_key = public_key_text(self.private_key)

    def issue(self, plan="enterprise", *, days=365, expired_days_ago=None, customer="Test Co", limits=None) -> str:
        now = timezone.now()
        expires = now - timedelta(days=expired_days_ago) if expired_days_ago is not None else now + timedelta(days=days)
        payload = {
            "plan": plan,
            "customer": customer,
            "issued_at": (now - timedelta(days=400)).isoformat(),
            "expires_at": expires.isoformat(),
            "license_id": "test",
            "limits": limits or {},
        }
        return sign_license(self.private_key, payload)
