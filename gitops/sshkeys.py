"""SSH key handling: deploy key generation, private key loading, host keys and their fingerprints."""

import base64
import hashlib
import hmac
import io

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")


class KeyError_(ValueError):
    """A key that cannot be used; the message says why."""


def generate_keypair(comment: str = "fleet-gitops") -> tuple[str, str]:
    """A new Ed25519 key pair: (OpenSSH private key PEM, OpenSSH public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


def load_private_key(text: str) -> paramiko.PKey:
    """Parse an unencrypted OpenSSH/PEM private key (Ed25519, ECDSA or RSA)."""
    text = (text or "").strip() + "\n"
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except paramiko.PasswordRequiredException as exc:
            raise KeyError_("The private key is protected by a passphrase: upload an unencrypted deploy key.") from exc
        except (paramiko.SSHException, ValueError, TypeError, IndexError, AssertionError):
            continue
    raise KeyError_("This is not a private key the panel can read: paste an OpenSSH or PEM Ed25519, ECDSA or RSA key.")


def public_key_line(pkey: paramiko.PKey, comment: str = "fleet-gitops") -> str:
    return f"{pkey.get_name()} {pkey.get_base64()} {comment}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint: `SHA256:<base64 without padding>`."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _read_key(key_type: str, data: str) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(data, validate=True))
    except Exception as exc:  # paramiko and base64 raise several types for malformed keys
        raise KeyError_(f"The host key in this line cannot be read ({exc.__class__.__name__}).") from exc


def _names_host(field: str, name: str) -> bool:
    """Does the known_hosts host field (comma-separated names, `[host]:port`, hashed `|1|…`) name `name`?"""
    for pattern in field.split(","):
        if pattern.startswith("|1|"):
            if hmac.compare_digest(paramiko.HostKeys.hash_host(name, pattern), pattern):
                return True
        elif pattern.lower() == name.lower():
            return True
    return False


def host_key_from_text(text: str, *, host_name: str | None = None) -> paramiko.PKey:
    """A host key from pasted text: known_hosts lines (`host[,host…] keytype base64`) or a bare
    `keytype base64 [comment]` (a host's .pub file). With `host_name` (`host`, or `[host]:port` for a
    port other than 22, as OpenSSH writes it), a known_hosts line must name that host: a key pinned for
    github.com says nothing about another server."""
    named_others = []
    for raw in (text or "").splitlines():
        parts = raw.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0].startswith("@"):
            raise KeyError_("Markers such as @cert-authority or @revoked are not supported: paste the host's key.")
        if parts[0].startswith(KEY_PREFIXES):
            if len(parts) < 2:
                break
            return _read_key(parts[0], parts[1])
        if len(parts) < 3 or not parts[1].startswith(KEY_PREFIXES):
            break
        if host_name is not None and not _names_host(parts[0], host_name):
            named_others.append(parts[0])
            continue
        return _read_key(parts[1], parts[2])
    if named_others:
        shown = ", ".join(sorted({n[:60] for n in named_others}))
        raise KeyError_(
            f"This known_hosts line is for {shown}, not for {host_name}: paste the line of the repository's "
            "host (ssh-keyscan -p PORT HOST prints it; a port other than 22 is written [host]:port)."
        )
    raise KeyError_("Paste a known_hosts line such as: example.com ssh-ed25519 AAAAC3Nza…")


def host_key_text(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"
