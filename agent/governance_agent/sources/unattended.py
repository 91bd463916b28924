"""Whether unattended upgrades are on: the `unattended-upgrades` package is installed and apt's
`APT::Periodic::Unattended-Upgrade` (from `apt-config dump`, after every apt.conf.d file) is not 0.
Reported as `unattended_upgrades.enabled`."""

from __future__ import annotations

import re

from ._common import SourceError

KEY = "unattended_upgrades.enabled"
PACKAGE = "unattended-upgrades"
_LINE = re.compile(r'^(\S+)\s+"(.*)";\Z')


def parse_dump(text: str) -> dict[str, str]:
    """{option: value} from `apt-config dump` (`Name "value";` lines; list items repeat a name)."""
    values = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def periodic_value(options: dict[str, str], name: str) -> int:
    """An APT::Periodic interval in days ("1", "always", "0", "7d"...); 0 when unset or off."""
    value = options.get(f"APT::Periodic::{name}", "0").strip().lower()
    if value == "always":
        return 1
    match = re.match(r"^(\d+)", value)
    return int(match.group(1)) if match else 0


def enabled(options: dict[str, str], package_installed: bool) -> bool:
    return package_installed and periodic_value(options, "Unattended-Upgrade") > 0


def collect(host, package_installed: bool) -> dict:
    result = host.run(["apt-config", "dump"], timeout=20)
    if not result.ok:
        raise SourceError(f"apt-config dump: {result.why()}")
    return {KEY: enabled(parse_dump(result.stdout), package_installed)}
