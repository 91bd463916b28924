"""Helpers shared by the license commands (a leading underscore keeps Django from listing it)."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import CommandError
from django.utils import timezone

from fleet.licensing import PLANS, public_key_text, sign_license


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, never world-readable on the way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def generate_keypair(private_path: Path) -> str:
    """Write a new Ed25519 private key (PEM) and `<path>.pub` (base64 raw public key); return the public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(private_path, pem)
    public = public_key_text(key)
    public_path(private_path).write_text(public + "\n")
    return public


def public_path(private_path: Path) -> Path:
    return private_path.with_suffix(".pub")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise CommandError(
            f"No private key at {path}: create one with `manage.py gen_license_keypair {path}`."
        ) from exc
    except ValueError as exc:
        raise CommandError(f"{path} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CommandError(f"{path} is not an Ed25519 key.")
    return key


def issue(key: Ed25519PrivateKey, *, plan: str, customer: str, days: int, max_instances: int | None = None) -> str:
    if plan not in PLANS:
        raise CommandError(f"Unknown plan {plan!r}: use one of {', '.join(PLANS)}.")
    if days < 1:
        raise CommandError("--days must be at least 1.")
    now = timezone.now().replace(microsecond=0)
    payload = {
        "plan": plan,
        "customer": customer,
        "issued_at": now.isoformat(),
        "expires_at": (now + timedelta(days=days)).isoformat(),
        "license_id": secrets.token_hex(8),
        "limits": {"max_instances": max_instances} if max_instances else {},
    }
    return sign_license(key, payload)
