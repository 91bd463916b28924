"""The agent's configuration: `/etc/governance-agent/agent.toml`, checked whole before anything runs.

Every problem is reported at once, by its TOML path (`panel.url: ...`, `health.checks[1].port: ...`),
so an operator fixes the file in one pass. Paths under `[system]` default to the real system; tests
point `system.root` at a scratch directory, and every other default path follows it.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_CONFIG = "/etc/governance-agent/agent.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}\Z")
FINGERPRINT_RE = re.compile(r"^(sha256:)?([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}\Z")
CHECK_TYPES = ("http", "systemd", "tcp")


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason as "path: message"."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        where = f"{source}: " if source else ""
        super().__init__(
            where
            + ("; ".join(problems) if len(problems) < 2 else f"{len(problems)} problems:\n  " + "\n  ".join(problems))
        )


@dataclass(frozen=True)
class HealthCheck:
    type: str  # http | systemd | tcp
    target: str  # the URL, the unit, or host:port
    name: str

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.target.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass
class Config:
    panel_url: str = ""
    ca_bundle: str = ""
    fingerprint: str = ""  # SHA-256 of the panel certificate's DER, lowercase hex without colons
    registration_token: str = ""
    name: str = ""
    address: str = ""
    # Every server asks this often: 10,000 servers at 10 s are 1,000 requests a second to the panel.
    command_poll_interval: float = 10.0
    state_dir: str = "/var/lib/governance-agent"
    credential_file: str = "/etc/governance-agent/credential.json"
    managed_settings_file: str = "/etc/governance-agent/managed-settings.json"
    log_level: str = "info"
    apps: list[str] = field(default_factory=lambda: ["*"])
    units: dict[str, str] = field(default_factory=dict)
    sysctl: list[str] = field(default_factory=list)
    sshd: bool = True
    sshd_keywords: list[str] = field(default_factory=list)
    unattended_upgrades: bool = True
    updates: bool = True
    apt_update_interval: int = 6 * 3600
    health_listen: str = "0.0.0.0:8471"
    health_path: str = "/health"
    health_timeout: float = 1.5
    health_checks: list[HealthCheck] = field(default_factory=list)
    root: str = "/"
    apt_config: str = ""
    dpkg_admindir: str = ""
    sshd_config: str = ""
    ssh_dropin: str = ""
    ssh_service: str = "ssh.service"
    sysctl_file: str = ""
    apt_conf_file: str = ""
    source: str = ""  # the file this came from, for messages

    def path(self, relative: str) -> str:
        """`relative` (like /etc/os-release) inside the configured system root."""
        return str(Path(self.root) / relative.lstrip("/"))

    def fill_defaults(self) -> Config:
        self.dpkg_admindir = self.dpkg_admindir or self.path("/var/lib/dpkg")
        self.sshd_config = self.sshd_config or self.path("/etc/ssh/sshd_config")
        # 00-, not 90-: sshd keeps the FIRST value it reads for a keyword, and the drop-ins are read in
        # lexical order, so a 90- file loses to e.g. Ubuntu's 50-cloud-init.conf (see docs/agent.md).
        self.ssh_dropin = self.ssh_dropin or self.path("/etc/ssh/sshd_config.d/00-governance.conf")
        self.sysctl_file = self.sysctl_file or self.path("/etc/sysctl.d/90-governance.conf")
        self.apt_conf_file = self.apt_conf_file or self.path("/etc/apt/apt.conf.d/90governance")
        self.name = self.name or socket.gethostname().split(".")[0]
        return self

    @property
    def state_file(self) -> str:
        return str(Path(self.state_dir) / "state.json")


# Keys each table may hold: (attribute, expected types, check). Unknown keys are refused and named.
_STR, _NUM, _BOOL, _LIST, _DICT = (str,), (int, float), (bool,), (list,), (dict,)
_TABLES = {
    "panel": {
        "url": ("panel_url", _STR),
        "ca_bundle": ("ca_bundle", _STR),
        "fingerprint": ("fingerprint", _STR),
        "registration_token": ("registration_token", _STR),
        "name": ("name", _STR),
        "address": ("address", _STR),
        "command_poll_interval": ("command_poll_interval", _NUM),
    },
    "agent": {
        "state_dir": ("state_dir", _STR),
        "credential_file": ("credential_file", _STR),
        "managed_settings_file": ("managed_settings_file", _STR),
        "log_level": ("log_level", _STR),
    },
    "report": {
        "apps": ("apps", _LIST),
        "units": ("units", _DICT),
        "sysctl": ("sysctl", _LIST),
        "sshd": ("sshd", _BOOL),
        "sshd_keywords": ("sshd_keywords", _LIST),
        "unattended_upgrades": ("unattended_upgrades", _BOOL),
        "updates": ("updates", _BOOL),
        "apt_update_interval": ("apt_update_interval", (int,)),
    },
    "health": {
        "listen": ("health_listen", _STR),
        "path": ("health_path", _STR),
        "timeout": ("health_timeout", _NUM),
        "checks": (None, _LIST),
    },
    "system": {
        "root": ("root", _STR),
        "apt_config": ("apt_config", _STR),
        "dpkg_admindir": ("dpkg_admindir", _STR),
        "sshd_config": ("sshd_config", _STR),
        "ssh_dropin": ("ssh_dropin", _STR),
        "ssh_service": ("ssh_service", _STR),
        "sysctl_file": ("sysctl_file", _STR),
        "apt_conf_file": ("apt_conf_file", _STR),
    },
}
_TYPE_WORDS = {_STR: "a string", _NUM: "a number", _BOOL: "true or false", _LIST: "a list", _DICT: "a table"}


def load(path: str | os.PathLike | None = None, *, insecure_dev: bool = False, overrides: dict | None = None) -> Config:
    """Read and check the configuration file; `overrides` (attribute → value) come from the command line."""
    path = str(path or os.environ.get("GOVERNANCE_AGENT_CONFIG") or DEFAULT_CONFIG)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"the configuration file does not exist (copy agent.toml.example to {path})"], path)
    except PermissionError:
        raise ConfigError(["the configuration file is not readable by this user (run as root)"], path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], path)
    return from_dict(data, source=path, insecure_dev=insecure_dev, overrides=overrides)


def from_dict(data: dict, *, source: str = "", insecure_dev: bool = False, overrides: dict | None = None) -> Config:
    config, problems = Config(source=source), []
    for table, value in data.items():
        if table not in _TABLES:
            problems.append(f"{table}: unknown table (expected {', '.join(_TABLES)})")
        elif not isinstance(value, dict):
            problems.append(f"{table}: must be a table ([{table}])")
        else:
            _read_table(config, table, value, problems)
    for attr, value in (overrides or {}).items():
        if value not in (None, ""):
            setattr(config, attr, value)
    config.fill_defaults()
    _check(config, problems, insecure_dev=insecure_dev)
    if problems:
        raise ConfigError(problems, source)
    return config


def _read_table(config: Config, table: str, values: dict, problems: list[str]) -> None:
    spec = _TABLES[table]
    for key, value in values.items():
        where = f"{table}.{key}"
        if key not in spec:
            problems.append(f"{where}: unknown key (expected one of {', '.join(spec)})")
            continue
        attr, types = spec[key]
        if isinstance(value, bool) and types is not _BOOL or not isinstance(value, types):
            problems.append(f"{where}: must be {_TYPE_WORDS.get(types, 'an integer')}")
            continue
        if attr is None:
            config.health_checks = _health_checks(value, problems)
        elif types is _LIST:
            if not all(isinstance(v, str) and v for v in value):
                problems.append(f"{where}: every item must be a non-empty string")
                continue
            setattr(config, attr, list(value))
        elif types is _DICT:
            if not all(isinstance(v, str) and v for v in value.values()):
                problems.append(f"{where}: every value must be a non-empty string")
                continue
            setattr(config, attr, dict(value))
        else:
            setattr(config, attr, value)


def _health_checks(items: list, problems: list[str]) -> list[HealthCheck]:
    checks = []
    for i, item in enumerate(items):
        where = f"health.checks[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a table with a type")
            continue
        kind = item.get("type")
        unknown = sorted(set(item) - {"type", "url", "unit", "host", "port", "name"})
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
        if kind == "http":
            url = item.get("url")
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                problems.append(f"{where}.url: must be an http:// or https:// URL")
                continue
            target = url
        elif kind == "systemd":
            unit = item.get("unit")
            if not isinstance(unit, str) or not re.fullmatch(r"[A-Za-z0-9@_.:\\-]{1,255}", unit):
                problems.append(f"{where}.unit: must be a systemd unit name such as nginx.service")
                continue
            target = unit if "." in unit else unit + ".service"
        elif kind == "tcp":
            host, port = item.get("host", "127.0.0.1"), item.get("port")
            if not isinstance(host, str) or not host:
                problems.append(f"{where}.host: must be a host name or address")
                continue
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                problems.append(f"{where}.port: must be a port number 1-65535")
                continue
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        else:
            problems.append(f"{where}.type: must be one of {', '.join(CHECK_TYPES)}")
            continue
        name = item.get("name") or f"{kind} {target}"
        checks.append(HealthCheck(kind, target, str(name)))
    return checks


def _check(config: Config, problems: list[str], *, insecure_dev: bool) -> None:
    parts = urlsplit(config.panel_url)
    if not config.panel_url:
        problems.append("panel.url: required (the panel's address, https://panel.example.com)")
    elif parts.scheme == "http" and not insecure_dev:
        problems.append(
            "panel.url: plain http:// is refused; use https:// (or --insecure-dev on a development machine)"
        )
    elif parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        problems.append("panel.url: must be https://host[:port] with no path or query")
    if config.ca_bundle and config.fingerprint:
        problems.append("panel.fingerprint: give either ca_bundle or fingerprint, not both")
    if config.ca_bundle and not os.path.isfile(config.ca_bundle):
        problems.append(f"panel.ca_bundle: {config.ca_bundle} does not exist")
    if config.fingerprint:
        if not FINGERPRINT_RE.match(config.fingerprint.strip()):
            problems.append("panel.fingerprint: must be a SHA-256 fingerprint (64 hex digits, colons allowed)")
        else:
            config.fingerprint = config.fingerprint.strip().lower().removeprefix("sha256:").replace(":", "")
    if not NAME_RE.match(config.name):
        problems.append("panel.name: letters, digits, '.', '_' and '-', at most 100, starting with a letter or digit")
    if config.address and not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]{1,255}", config.address):
        problems.append("panel.address: must be host:port")
    if not 0.5 <= config.command_poll_interval <= 3600:
        problems.append("panel.command_poll_interval: must be between 0.5 and 3600 seconds")
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        problems.append("agent.log_level: must be debug, info, warning or error")
    for key in config.sysctl:
        if not re.fullmatch(r"[a-z0-9_\-]+(\.[A-Za-z0-9_\-]+)+", key):
            problems.append(f"report.sysctl: '{key}' is not a sysctl key such as net.ipv4.ip_forward")
    for keyword in config.sshd_keywords:
        if not re.fullmatch(r"[a-z]+", keyword):
            problems.append(f"report.sshd_keywords: '{keyword}' is not an sshd keyword as `sshd -T` prints it")
    if config.apt_update_interval < 0:
        problems.append("report.apt_update_interval: must be 0 (never) or a number of seconds")
    _check_health(config, problems)
    for where, attr in (
        ("agent.state_dir", "state_dir"),
        ("agent.credential_file", "credential_file"),
        ("agent.managed_settings_file", "managed_settings_file"),
        ("system.root", "root"),
    ):
        if not os.path.isabs(getattr(config, attr)):
            problems.append(f"{where}: must be an absolute path")


def _check_health(config: Config, problems: list[str]) -> None:
    host, _, port = config.health_listen.rpartition(":")
    if not host or not port.isdecimal() or not 0 <= int(port) <= 65535:
        problems.append("health.listen: must be address:port, such as 0.0.0.0:8471 (port 0: any free port)")
    if not config.health_path.startswith("/") or any(c.isspace() for c in config.health_path):
        problems.append("health.path: must be a path starting with /, such as /health")
    if not 0.1 <= config.health_timeout <= 30:
        problems.append("health.timeout: must be between 0.1 and 30 seconds")
