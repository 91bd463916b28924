"""Available updates, from apt's simulation of a full upgrade (`apt-get -s dist-upgrade`) over the
package lists as they are (the agent refreshes them every `report.apt_update_interval`).

Each package with a newer candidate is an app update. An upgrade of `base-files`, the package that
carries the release files, is also the OS update: Debian's point release is in its version
(`12.4+deb12u15` → 12.15); Ubuntu's is not, so it is the point release after the current one.
When each update was first seen is the agent's business (`store.State.released_at`).
"""

from __future__ import annotations

import re

from ._common import SourceError
from .dpkg import strip_epoch
from .os_release import newer, point_release_after

# Inst libssl3 [3.0.11-1~deb12u2] (3.0.13-1~deb12u1 Debian:12.5/stable, Debian-Security:12/stable-security [amd64])
_INST = re.compile(r"^Inst (\S+) \[([^\]]+)\] \((\S+) ?(.*?) \[([^\]]+)\]\)")
_DEBIAN_POINT = re.compile(r"\+deb(\d+)u(\d+)\Z")
OS_PACKAGE = "base-files"


def parse_simulation(text: str) -> list[dict]:
    """Upgrades in `apt-get -s` output: [{"name", "from", "to", "origins"}]; new packages and removals
    (lines without an installed version in brackets) are not upgrades."""
    upgrades, seen = [], set()
    for line in text.splitlines():
        match = _INST.match(line)
        if not match:
            continue
        name, old, new, origins, _arch = match.groups()
        name = name.split(":", 1)[0]  # libc6:i386 is the libc6 app for another architecture
        if name in seen:
            continue
        seen.add(name)
        upgrades.append(
            {"name": name, "from": old, "to": new, "origins": [o.strip() for o in origins.split(",") if o.strip()]}
        )
    return upgrades


def os_update_version(os_id: str, current: str, base_files: dict) -> str:
    """The OS version the base-files upgrade brings ("" when it cannot tell)."""
    match = _DEBIAN_POINT.search(base_files["to"])
    if os_id == "debian" and match:
        return f"{match.group(1)}.{match.group(2)}"
    if os_id == "debian":
        for origin in base_files["origins"]:  # "Debian:12.15/oldstable": the archive's point release
            found = re.match(r"^Debian:(\d+\.\d+)/", origin)
            if found:
                return found.group(1)
        return ""
    return point_release_after(current) if current else ""


def updates(upgrades: list[dict], os_id: str, current_os: str) -> list[tuple[str, str, str]]:
    """[(kind, name, version)] to report, sorted."""
    found = {("app", u["name"], strip_epoch(u["to"])) for u in upgrades}
    base = next((u for u in upgrades if u["name"] == OS_PACKAGE), None)
    if base is not None:
        version = os_update_version(os_id, current_os, base)
        if version and newer(version, current_os):
            found.add(("os", "os", version))
    return sorted(found)


def simulate(host) -> list[dict]:
    result = host.run(["apt-get", "-s", "-q", "dist-upgrade"], timeout=180)
    if not result.ok:
        raise SourceError(f"apt-get -s dist-upgrade: {result.why()}")
    return parse_simulation(result.stdout)
