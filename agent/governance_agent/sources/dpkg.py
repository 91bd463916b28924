"""Installed Debian packages, from `dpkg-query -W`: the apps the panel sees.

Versions are reported without the Debian epoch (`1:9.2p1-2+deb12u3` → `9.2p1-2+deb12u3`): the
panel compares versions part by part as numbers, where an epoch would read as a first part (so
`1:2.39` would look older than `1.5`), and its command schema has no `:`. The agent restores the
epoch when it installs a version (`actions.apt.resolve_version`).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ._common import SourceError

QUERY_FORMAT = "${Package}\t${Version}\t${db:Status-Status}\t${Architecture}\n"
# What the panel accepts per app (fleet/agent/serializers.py).
MAX_NAME, MAX_VERSION = 100, 64


def strip_epoch(version: str) -> str:
    epoch, sep, rest = version.partition(":")
    return rest if sep and epoch.isdecimal() else version


def parse_packages(text: str) -> dict[str, dict]:
    """{name: {"version", "full_version", "arch"}} of packages whose status is `installed`.

    Packages that are only configured-files (removed, not purged), half-installed or unpacked are not
    installed. A package installed for two architectures (multiarch) is one app.
    """
    packages: dict[str, dict] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        name, version, status = fields[0], fields[1], fields[2]
        if status != "installed" or not name or not version or name in packages:
            continue
        packages[name] = {
            "version": strip_epoch(version),
            "full_version": version,
            "arch": fields[3] if len(fields) > 3 else "",
        }
    return packages


def select(packages: dict[str, dict], globs: list[str]) -> dict[str, dict]:
    """The packages matching any of the configured globs (`*` is every package)."""
    if not globs or "*" in globs:
        return dict(packages)
    return {n: p for n, p in packages.items() if any(fnmatchcase(n, g) for g in globs)}


def reportable(packages: dict[str, dict]) -> tuple[dict[str, dict], list[str]]:
    """The packages the panel's schema can hold, and a note for each left out."""
    kept, notes = {}, []
    for name, pkg in packages.items():
        if len(name) > MAX_NAME or len(pkg["version"]) > MAX_VERSION:
            notes.append(f"{name} {pkg['version']}: name or version longer than the panel accepts, not reported")
        else:
            kept[name] = pkg
    return kept, notes


def installed(host) -> dict[str, dict]:
    """Every installed package of the host (not only the reported ones)."""
    result = host.run([*host.dpkg_query(), "-W", "-f", QUERY_FORMAT], timeout=60)
    if not result.ok:
        raise SourceError(f"dpkg-query: {result.why()}")
    return parse_packages(result.stdout)
