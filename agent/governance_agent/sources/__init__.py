"""The state the agent reports: one heartbeat body, gathered from the system's own tools.

    os_version   /etc/os-release (+ /etc/debian_version)          sources.os_release
    apps         dpkg-query -W, running from systemctl            sources.dpkg, sources.systemd
    settings     os.*, ssh.* (sshd -T), sysctl.*, unattended_upgrades.enabled, and the keys the panel
                 set that no tool reads back (the managed settings file)
    updates      apt-get -s dist-upgrade, released_at = first seen sources.apt_updates, store

A source that fails is reported with its last good value (and the failure is in `problems`), never
as empty: an empty app list would tell the panel every package was removed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from .. import __version__
from . import apt_updates, dpkg, os_release, sshd, sysctl, systemd, unattended
from ._common import SourceError

logger = logging.getLogger("governance_agent.sources")
# The panel's limits per heartbeat (fleet/agent/serializers.py).
MAX_APPS, MAX_UPDATES = 10000, 500


@dataclass
class Report:
    payload: dict
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_managed(path: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: {exc}")
    return data if isinstance(data, dict) else {}


class Collector:
    """Gathers the report. Keeps the update simulation (the slow part, about a second) until the
    package lists or the installed packages change."""

    def __init__(self, host, state, *, dry_run: bool = False):
        self.host, self.state, self.dry_run = host, state, dry_run
        self._updates_key = None
        self._updates: list[dict] = []

    def _guard(self, name: str, fn, problems: list[str], default):
        try:
            value = fn()
        except SourceError as exc:
            problems.append(f"{name}: {exc}")
            return self.state.source(name, default)
        self.state.remember_source(name, value)
        return value

    def collect(self) -> Report:
        config, problems, notes = self.host.config, [], []
        version, os_settings = self._guard("os", lambda: list(os_release.collect(self.host)), problems, ["", {}])
        packages = self._guard("packages", lambda: dpkg.installed(self.host), problems, {})
        reported, skipped = dpkg.reportable(dpkg.select(packages, config.apps))
        notes += skipped
        running = self._guard("services", lambda: systemd.running_states(self.host, sorted(reported)), problems, {})
        apps = [
            {"name": name, "version": pkg["version"], "running": running.get(name, True)}
            for name, pkg in sorted(reported.items())
        ]
        if len(apps) > MAX_APPS:
            notes.append(f"{len(apps)} packages match report.apps; the panel takes {MAX_APPS}: narrow report.apps")
            apps = apps[:MAX_APPS]
        settings = dict(self._guard("managed", lambda: read_managed(config.managed_settings_file), problems, {}))
        settings.update(os_settings)
        if config.sshd:
            settings.update(self._guard("sshd", lambda: sshd.collect(self.host), problems, {}))
        sysctl_values = self._guard("sysctl", lambda: self._sysctl(notes), problems, {})
        settings.update(sysctl_values)
        if config.unattended_upgrades:
            has_package = unattended.PACKAGE in packages
            settings.update(self._guard("unattended", lambda: unattended.collect(self.host, has_package), problems, {}))
        updates = self._collect_updates(version, os_settings.get("os.id", ""), problems) if config.updates else []
        payload = {
            "os_version": version,
            "apps": apps,
            "settings": dict(sorted(settings.items())),
            "updates": updates[:MAX_UPDATES],
            "agent_version": __version__ + (" (dry-run)" if self.dry_run else ""),
        }
        return Report(payload, problems, notes)

    def _sysctl(self, notes: list[str]) -> dict:
        values, unreadable = sysctl.collect(self.host)
        notes.extend(f"sysctl: {line}" for line in unreadable)
        return values

    def _collect_updates(self, current_os: str, os_id: str, problems: list[str]) -> list[dict]:
        key = (_mtime(self.host.path("/var/lib/apt/lists")), _mtime(self.host.config.dpkg_admindir + "/status"))
        if key != self._updates_key:
            upgrades = self._guard("upgrades", lambda: apt_updates.simulate(self.host), problems, [])
            self._updates = upgrades
            if not problems or not problems[-1].startswith("upgrades:"):
                self._updates_key = key
        found = apt_updates.updates(self._updates, os_id, current_os)
        return self.state.released_at(found)

    def invalidate(self) -> None:
        """Forget the cached update simulation (after a command changed packages or lists)."""
        self._updates_key = None


def _mtime(path) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


__all__ = ["Collector", "Report", "SourceError"]
