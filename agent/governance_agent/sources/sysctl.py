"""Kernel parameters, from `sysctl <key>...`: the keys in `report.sysctl` and those the panel set
(the ones in the agent's sysctl.d file). Reported as `sysctl.<key>`; whole numbers are numbers, a
multi-valued parameter (`net.ipv4.ip_local_port_range`) is its values joined by one space."""

from __future__ import annotations

import re

from ._common import SourceError

_LINE = re.compile(r"^([A-Za-z0-9_.\-/]+)\s*=\s?(.*)\Z")


def parse_values(text: str) -> dict[str, str]:
    """{key: value} from `sysctl` output ("key = value" lines)."""
    values = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            values[match.group(1).replace("/", ".")] = " ".join(match.group(2).split())
    return values


def parse_errors(text: str) -> list[str]:
    """What sysctl said about keys it could not read (missing or not permitted)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def typed(value: str):
    return int(value) if re.fullmatch(r"-?\d{1,18}", value) else value


def parse_conf(text: str | None) -> dict[str, str]:
    """{key: value} of a sysctl.d file (`key = value` lines, `#` and `;` comments)."""
    values = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lstrip("-").replace("/", ".")] = value.strip()
    return values


def read(host, keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """Current values of `keys` and the problems sysctl reported (a key it cannot read is absent)."""
    if not keys:
        return {}, []
    result = host.run(["sysctl", "--", *keys], timeout=20)
    if result.returncode is None:
        raise SourceError(f"sysctl: {result.why()}")
    return parse_values(result.stdout), parse_errors(result.stderr)


def collect(host) -> tuple[dict, list[str]]:
    keys = sorted(set(host.config.sysctl) | set(parse_conf(host.read_abs(host.config.sysctl_file))))
    values, problems = read(host, keys)
    return {f"sysctl.{k}": typed(v) for k, v in values.items()}, problems
