"""Where the panel may open connections, and what an instance address may look like.

The panel itself connects out in two places: canary health probes (to an instance's address) and
GitOps fetches (to a Git host). Both ask `resolve_outbound` first, so an agent that registers with
`169.254.169.254:80` or an operator who types `metadata.google.internal` cannot make the panel talk to
cloud metadata or to itself. The refusal comes before any connection: the name is checked, then
resolved, and every address it resolves to is checked; callers connect to the addresses returned
(never resolving again, so a DNS answer cannot change between check and use).

`OUTBOUND_DENY_NETWORKS` (settings) lists networks (CIDR) and host names. Its default refuses
link-local (169.254.0.0/16, fe80::/10: cloud metadata lives there), the metadata host names and
0.0.0.0/8, and in production (DEBUG off) loopback too; development allows loopback because the
simulated fleet and the tests' servers live there.
"""

import ipaddress
import re
import socket
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError

from common.exceptions import ApplicationError

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


class OutboundRefused(ApplicationError):
    """The panel will not connect there. One message whatever the reason on the network side."""

    code = "outbound_refused"


def parse_address(value: str) -> tuple[str, int | None]:
    """`host[:port]` → (host, port). Host: a DNS name, an IPv4 address or a bracketed IPv6 address.
    No scheme, user, password, path, query or fragment; ports 1–65535. Raises ValidationError."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ValidationError("Give a host name or address, optionally with :port.", code="invalid_address")
    if len(text) > 261 or any(c in text for c in "/@?#\\ \t") or "://" in text:
        raise ValidationError(
            "Give only host[:port] (like web-01.example.com:8080 or [2001:db8::1]:8080): "
            "no scheme, user name, path or query.",
            code="invalid_address",
        )
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise ValidationError("An IPv6 address goes in brackets: [2001:db8::1]:8080.", code="invalid_address")
        host, port_text = text[1:end], (text[end + 2 :] if end + 1 < len(text) else None)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValidationError(f"'{host}' is not an IPv6 address.", code="invalid_address") from None
    else:
        if text.count(":") > 1:
            raise ValidationError("An IPv6 address goes in brackets: [2001:db8::1]:8080.", code="invalid_address")
        if ":" in text:
            host, port_text = text.split(":", 1)
        if not _valid_host(host):
            raise ValidationError(f"'{host}' is not a host name or IPv4 address.", code="invalid_address")
    port = None
    if port_text is not None:
        if not port_text.isdecimal() or not 1 <= int(port_text) <= 65535:
            raise ValidationError("The port must be a number from 1 to 65535.", code="invalid_port")
        port = int(port_text)
    return host.lower(), port


def _valid_host(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    if host.replace(".", "").isdecimal():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return all(_LABEL.match(label) for label in host.rstrip(".").split("."))


def validate_address(value: str) -> None:
    """Validator for an instance address field (registration, API and HTML edit alike)."""
    parse_address(value)


@lru_cache(maxsize=8)
def _deny_rules(rules: tuple[str, ...]) -> tuple[tuple, frozenset]:
    networks, names = [], set()
    for rule in rules:
        try:
            networks.append(ipaddress.ip_network(rule, strict=False))
        except ValueError:
            names.add(rule.lower().rstrip("."))
    return tuple(networks), frozenset(names)


def _rules():
    return _deny_rules(tuple(settings.OUTBOUND_DENY_NETWORKS))


def ip_allowed(ip: str) -> bool:
    networks, _ = _rules()
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not any(address in network for network in networks if network.version == address.version)


def resolve_outbound(host: str, port: int, *, purpose: str = "connect to") -> list[str]:
    """The addresses the panel may connect to for host:port, or OutboundRefused. Checked before any
    connection: the name against the denied names, every resolved address against the denied networks.
    The message is the same for a refused, unknown or unreachable destination (no port scanning)."""
    message = f"The panel could not reach {host}:{port}."
    if not 1 <= int(port) <= 65535:
        raise OutboundRefused("The port must be a number from 1 to 65535.", field="port")
    _, names = _rules()
    if host.lower().rstrip(".") in names:
        raise OutboundRefused(f"{message} The panel does not {purpose} that host (OUTBOUND_DENY_NETWORKS).")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise OutboundRefused(message) from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses or not all(ip_allowed(ip) for ip in addresses):
        raise OutboundRefused(f"{message} The panel does not {purpose} that address (OUTBOUND_DENY_NETWORKS).")
    return addresses
