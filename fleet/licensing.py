"""Ed25519-signed licenses. Pure logic: signing (for the vendor tool and tests) and verification.

A license is `base64url(payload JSON) + "." + base64url(signature)`; the payload holds plan,
customer, limits, issued and expiry dates. The panel trusts one public key from settings.
"""

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .choices import LicenseState

PLANS = ("community", "pro", "business", "enterprise")
FEATURES = {"canary_deployments": "business", "gitops": "enterprise"}


class LicenseError(ValueError):
    """A license that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class LicenseInfo:
    plan: str
    customer: str
    issued_at: datetime
    expires_at: datetime
    license_id: str = ""
    limits: dict = field(default_factory=dict)

    def state(self, now: datetime, grace_days: int) -> str:
        if now <= self.expires_at:
            return LicenseState.VALID
        if now <= self.expires_at + timedelta(days=grace_days):
            return LicenseState.GRACE
        return LicenseState.EXPIRED


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))
    except Exception as exc:
        raise LicenseError("The configured LICENSE_PUBLIC_KEY is not a base64 Ed25519 public key.") from exc


def sign_license(private_key: Ed25519PrivateKey, payload: dict) -> str:
    if payload.get("plan") not in PLANS:
        raise LicenseError(f"Unknown plan {payload.get('plan')!r}: use one of {', '.join(PLANS)}.")
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return f"{_b64e(body)}.{_b64e(private_key.sign(body))}"


def verify_license(text: str, public_key_b64: str) -> LicenseInfo:
    """Check the signature and shape; return what the license grants. Expiry is judged by the caller."""
    if not public_key_b64:
        raise LicenseError("No license public key is configured (LICENSE_PUBLIC_KEY).")
    text = "".join(text.split())
    try:
        body_part, sig_part = text.split(".")
        body, signature = _b64d(body_part), _b64d(sig_part)
    except ValueError as exc:
        raise LicenseError("This is not a license file: expected two base64 parts separated by a dot.") from exc
    try:
        load_public_key(public_key_b64).verify(signature, body)
    except InvalidSignature as exc:
        raise LicenseError("The license signature does not match: it was altered or issued by someone else.") from exc
    payload = json.loads(body)
    try:
        plan = payload["plan"]
        if plan not in PLANS:
            raise LicenseError(f"The license names an unknown plan {plan!r}.")
        return LicenseInfo(
            plan=plan,
            customer=str(payload.get("customer", "")),
            issued_at=datetime.fromisoformat(payload["issued_at"]),
            expires_at=datetime.fromisoformat(payload["expires_at"]),
            license_id=str(payload.get("license_id", "")),
            limits=dict(payload.get("limits") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LicenseError(f"The license payload is incomplete: {exc}") from exc


def plan_allows(plan: str, feature: str) -> bool:
    required = FEATURES[feature]
    return PLANS.index(plan) >= PLANS.index(required)
