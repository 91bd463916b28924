"""App and OS commands through apt-get, non-interactively, checked before and after.

Before a change, apt simulates it (`apt-get -s`): an install, update or OS upgrade that would remove
packages, or an uninstall that would take other packages with it, is refused with their names
instead of done. After it, dpkg says whether the package is really at the version asked for.
"""

from __future__ import annotations

import re

from ..sources import apt_updates, dpkg, os_release
from ..sources._common import SourceError
from . import CommandFailed, Context

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
# Keep a locally changed configuration file and never ask about it; wait (up to 5 minutes) for dpkg's
# lock when apt-daily or unattended-upgrades holds it, instead of failing at once.
APT_OPTIONS = [
    "-y",
    "-q",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
    "-o",
    "DPkg::Lock::Timeout=300",
]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+\-]{0,99}\Z")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~:\-]{0,63}\Z")
_REMV = re.compile(r"^Remv (\S+)")


def _app(params: dict) -> str:
    name = params.get("app")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CommandFailed(f"'{name}' is not a Debian package name.")
    return name


def _version(params: dict, *, required: bool) -> str | None:
    version = params.get("version")
    if version in (None, "") and not required:
        return None
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise CommandFailed(f"'{version}' is not a Debian package version.")
    return version


def _installed(ctx: Context) -> dict[str, dict]:
    return dpkg.installed(ctx.host)


def refresh_lists(ctx: Context) -> None:
    """`apt-get update`. A source that cannot be fetched is noted, not fatal: the lists already there
    may hold what is asked, and if not, the install says so."""
    result = ctx.run(["apt-get", "-q", "update"], timeout=300, env=APT_ENV, check=False)
    if not result.ok:
        ctx.note(f"apt-get update did not fully succeed ({result.why()}); going on with the lists there are")


def available_versions(ctx: Context, app: str) -> list[str]:
    result = ctx.query(["apt-cache", "madison", "--", app], timeout=60)
    versions = []
    for line in result.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[0] == app and parts[1] not in versions:
            versions.append(parts[1])
    return versions


def resolve_version(ctx: Context, app: str, version: str, installed: dict | None) -> str:
    """The exact apt version for `version`, restoring the epoch the panel never sees (9.2p1-2 → 1:9.2p1-2)."""
    candidates = available_versions(ctx, app) + ([installed["full_version"]] if installed else [])
    for candidate in candidates:
        if candidate == version or dpkg.strip_epoch(candidate) == version:
            return candidate
    offered = ", ".join(dpkg.strip_epoch(v) for v in candidates) or "none"
    raise CommandFailed(f"{app} {version} is not available from the configured apt sources (available: {offered}).")


def _simulate(ctx: Context, args: list[str]) -> list[str]:
    """Packages `apt-get -s <args>` would remove; a simulation apt refuses fails the command."""
    result = ctx.query(["apt-get", "-s", "-q", *args], timeout=180)
    if not result.ok:
        raise CommandFailed(f"apt-get refuses this change: {result.why()}")
    return [m.group(1) for m in map(_REMV.match, result.stdout.splitlines()) if m]


def _apt_install(ctx: Context, app: str, version: str | None, installed: dict | None) -> str:
    refresh_lists(ctx)
    target = f"{app}={resolve_version(ctx, app, version, installed)}" if version else app
    extra = ["--allow-downgrades"] if version else []
    removed = _simulate(ctx, ["install", *extra, "--", target])
    if removed:
        raise CommandFailed(f"Installing {target} would remove {', '.join(removed)}; nothing was changed.")
    ctx.run(["apt-get", "install", *APT_OPTIONS, *extra, "--", target], timeout=1800, env=APT_ENV)
    if ctx.dry_run:
        return ""
    now = _installed(ctx).get(app)
    if now is None:
        raise CommandFailed(f"apt-get finished but {app} is not installed.")
    if version and now["version"] != dpkg.strip_epoch(target.split("=", 1)[1]):
        raise CommandFailed(f"apt-get finished but {app} is at {now['version']}, not {version}.")
    return f"{app} {now['version']} is installed."


def install_app(ctx: Context, params: dict) -> str:
    app, version = _app(params), _version(params, required=False)
    installed = _installed(ctx).get(app)
    if installed and (not version or installed["version"] == version or installed["full_version"] == version):
        return f"{app} {installed['version']} is already installed; nothing to do."
    return _apt_install(ctx, app, version, installed)


def update_app(ctx: Context, params: dict) -> str:
    app, version = _app(params), _version(params, required=True)
    installed = _installed(ctx).get(app)
    if installed is None:
        raise CommandFailed(f"{app} is not installed (install_app installs it).")
    if installed["version"] == version or installed["full_version"] == version:
        return f"{app} is already at {installed['version']}; nothing to do."
    return _apt_install(ctx, app, version, installed)


def uninstall_app(ctx: Context, params: dict) -> str:
    app = _app(params)
    if app not in _installed(ctx):
        return f"{app} is not installed; nothing to do."
    removed = _simulate(ctx, ["remove", "--", app])
    others = [p for p in removed if p != app]
    if others:
        raise CommandFailed(
            f"Removing {app} would also remove {', '.join(others)}; nothing was changed (remove those first)."
        )
    ctx.run(["apt-get", "remove", *APT_OPTIONS, "--", app], timeout=1800, env=APT_ENV)
    if not ctx.dry_run and app in _installed(ctx):
        raise CommandFailed(f"apt-get finished but {app} is still installed.")
    return f"{app} was removed (its configuration files are kept; apt-get purge removes them)."


def update_os(ctx: Context, params: dict) -> str:
    """`apt-get upgrade --with-new-pkgs` (what `apt upgrade` does): every package with an update,
    new dependencies allowed, nothing removed; held packages stay. Then the OS must be at the version
    asked for or newer; apt cannot go back to an older release."""
    version = _version(params, required=True)
    current, _settings = os_release.collect(ctx.host)
    if os_release.newer(current, version):
        raise CommandFailed(f"The OS is at {current}; apt cannot downgrade it to {version}.")
    refresh_lists(ctx)
    ctx.run(["apt-get", "upgrade", *APT_OPTIONS, "--with-new-pkgs"], timeout=3600, env=APT_ENV)
    if ctx.dry_run:
        return ""
    after, _settings = os_release.collect(ctx.host)
    if os_release.newer(version, after):
        left = [u["name"] for u in apt_updates.simulate(ctx.host)]
        raise CommandFailed(
            f"The OS is at {after} after the upgrade; {version} is not offered by the configured apt sources"
            + (f" (still upgradable: {', '.join(left[:20])})." if left else ".")
        )
    return f"The OS is at {after}." + _kept_back(ctx)


def _kept_back(ctx: Context) -> str:
    """The updates the upgrade left (it removes nothing, so one whose new version needs a package
    removed stays): they are still reported as available, and the panel's update rules still count
    them, so the result says which and how to take them."""
    try:
        left = [u["name"] for u in apt_updates.simulate(ctx.host) if u.get("kind") != "os"]
    except SourceError as exc:  # the upgrade itself went through: say so, and why this is unknown
        return f" (Which updates are left is unknown: {exc}.)"
    if not left:
        return ""
    return (
        f" Still upgradable, kept back by apt: {', '.join(left[:20])}"
        + (f" and {len(left) - 20} more" if len(left) > 20 else "")
        + " (an upgrade removes nothing; update_app says what taking one would remove)."
    )
