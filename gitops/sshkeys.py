"""SSH key handling: deploy key generation, private key loading, host keys and their fingerprints."""

import base64
import hashlib
import io
import socket

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


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


def host_key_from_text(text: str) -> paramiko.PKey:
    """A host key from a known_hosts line (`host keytype base64`) or `keytype base64`."""
    parts = text.strip().split()
    for i in range(len(parts) - 1):
        if parts[i].startswith(("ssh-", "ecdsa-", "sk-")):
            try:
                return paramiko.PKey.from_type_string(parts[i], base64.b64decode(parts[i + 1]))
            except Exception as exc:  # paramiko raises several types for malformed keys
                raise KeyError_(f"The host key in this line cannot be read ({exc}).") from exc
    raise KeyError_("Paste a known_hosts line such as: example.com ssh-ed25519 AAAAC3Nza…")


def host_key_text(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def fetch_host_key(host: str, port: int, timeout: float = 10.0) -> paramiko.PKey:
    """Connect and read the server's host key, without authenticating or trusting it."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ConnectionError(f"Cannot reach {host}:{port}: {exc.strerror or exc}") from exc
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise ConnectionError(f"{host}:{port} did not complete an SSH handshake: {exc}") from exc
    finally:
        transport.close()
