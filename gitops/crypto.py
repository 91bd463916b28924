"""Secrets at rest: MultiFernet over settings.FERNET_KEYS (the first key encrypts, all decrypt)."""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    """Ciphertext that none of the configured keys can decrypt (a key was removed too early)."""


def _fernet() -> MultiFernet:
    keys = list(getattr(settings, "FERNET_KEYS", []) or [])
    if not keys:
        raise ImproperlyConfigured("FERNET_KEYS is empty: GitOps cannot store private keys.")
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("The stored private key cannot be decrypted with any key in FERNET_KEYS.") from exc


def rotate(token: str) -> str:
    """Re-encrypt with the first (newest) key; the result decrypts without the old keys."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("The stored private key cannot be decrypted with any key in FERNET_KEYS.") from exc
