"""The OS name and version: /etc/os-release, and /etc/debian_version for Debian's point release.

`os_version` is what the panel's baseline and OS-update rules compare: Debian's point release
(`12.11`, from /etc/debian_version, since os-release only says `12`), Ubuntu's (`24.04.1`, from
VERSION="24.04.1 LTS (Noble Numbat)"), else VERSION_ID. The name goes into settings as `os.*`.
"""

from __future__ import annotations

import re
import shlex

from ._common import SourceError

_NUMBER = re.compile(r"^\d+(\.\d+)*")


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines with shell-style quoting, as os-release(5) specifies."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw, comments=False, posix=True)
        except ValueError:
            continue
        values[key.strip()] = parts[0] if parts else ""
    return values


def os_version(release: dict[str, str], debian_version: str | None = None) -> str:
    """The most precise numeric version the files give ("" when none is numeric, e.g. Debian testing)."""
    version_id = release.get("VERSION_ID", "")
    candidates = []
    if debian_version:
        candidates.append(debian_version.strip())
    version = release.get("VERSION", "")
    if version:
        candidates.append(version.split()[0])
    for text in candidates:
        match = _NUMBER.match(text)
        # Only a refinement of VERSION_ID counts: Ubuntu's debian_version says "trixie/sid".
        if match and (not version_id or match.group(0) == version_id or match.group(0).startswith(version_id + ".")):
            return match.group(0)
    match = _NUMBER.match(version_id)
    return match.group(0) if match else ""


def newer(a: str, b: str) -> bool:
    """Is dotted version a newer than b (24.04.2 > 24.04; "" is older than anything)?"""

    def key(v: str) -> tuple:
        match = _NUMBER.match(v or "")
        return tuple(int(p) for p in match.group(0).split(".")) if match else ()

    ka, kb = key(a), key(b)
    width = max(len(ka), len(kb))
    return ka + (0,) * (width - len(ka)) > kb + (0,) * (width - len(kb))


def point_release_after(current: str) -> str:
    """Ubuntu's next point release: 24.04 → 24.04.1, 24.04.1 → 24.04.2."""
    parts = current.split(".")
    if len(parts) == 2:
        return f"{current}.1"
    if len(parts) >= 3 and parts[-1].isdecimal():
        return ".".join([*parts[:-1], str(int(parts[-1]) + 1)])
    return ""


def collect(host) -> tuple[str, dict]:
    """(os_version, os.* settings) of the host."""
    text = host.read("/etc/os-release") or host.read("/usr/lib/os-release")
    if text is None:
        raise SourceError("neither /etc/os-release nor /usr/lib/os-release is readable")
    release = parse_os_release(text)
    version = os_version(release, host.read("/etc/debian_version") if release.get("ID") == "debian" else None)
    settings = {
        "os.id": release.get("ID", ""),
        "os.name": release.get("PRETTY_NAME") or release.get("NAME", ""),
        "os.codename": release.get("VERSION_CODENAME", ""),
    }
    return version, {k: v for k, v in settings.items() if v}
