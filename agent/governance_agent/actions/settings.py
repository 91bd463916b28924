"""set_config: one handler per key prefix, all or nothing.

    sysctl.<key>                   /etc/sysctl.d/90-governance.conf, applied with `sysctl -p`
    ssh.<name>                     /etc/ssh/sshd_config.d/00-governance.conf, checked with `sshd -t`,
                                   then `systemctl try-reload-or-restart ssh.service`
    unattended_upgrades.enabled    /etc/apt/apt.conf.d/90governance (APT::Periodic)
    os.*                           read from /etc/os-release: refused
    anything else                  the managed settings file (JSON), for tools on the server to read

Every key is checked before anything is written, and every problem is reported at once. A handler
that fails restores its file (and the kernel values it changed); the handlers that had already
succeeded in the same command are then undone too, so a command changes everything or nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from ..sources import dpkg, unattended
from ..sources import sshd as sshd_source
from ..sources import sysctl as sysctl_source
from . import CommandFailed, Context

SYSCTL_KEY = re.compile(r"^[a-z0-9_\-]+(\.[A-Za-z0-9_\-]+)+\Z")
SSH_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
# Not settings but structure: a Match line makes every line after it in the drop-in conditional (our
# keywords are written sorted, so which ones would depend on their names), Include reads another file.
SSH_STRUCTURE = ("match", "include")
SAFE_TEXT = re.compile(r"^[^\x00-\x1f\x7f#\"\\]{1,512}\Z")
HEADER = "Managed by governance-agent: the panel's {what}. Changes made here are overwritten."
Undo = Callable[[], None]


def _prefix(key: str) -> str:
    if key.startswith("os."):
        return "os"
    for prefix in ("sysctl", "ssh", "unattended_upgrades"):
        if key.startswith(prefix + "."):
            return prefix
    return "managed"


def _text(key: str, value, *, yes_no: bool = False) -> str:
    if isinstance(value, bool):
        return ("yes" if value else "no") if yes_no else ("1" if value else "0")
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str) or not SAFE_TEXT.match(value.strip()):
        raise ValueError(f"{key}: the value must be one line of text without #, quotes or backslashes")
    return value.strip()


def set_config(ctx: Context, params: dict) -> str:
    values, unset = params.get("values") or {}, params.get("unset") or []
    if not isinstance(values, dict) or not isinstance(unset, list):
        raise CommandFailed("set_config takes 'values' (key → value) and 'unset' (a list of keys).")
    groups: dict[str, tuple[dict, list]] = {}
    problems = []
    for key in [*values, *unset]:
        if not isinstance(key, str):
            problems.append(f"{key!r}: a key must be text")
            continue
        prefix = _prefix(key)
        set_, drop = groups.setdefault(prefix, ({}, []))
        if key in values:
            set_[key] = values[key]
        else:
            drop.append(key)
    problems += _check(groups)
    if problems:
        raise CommandFailed("Nothing was changed: " + "; ".join(problems))
    undo: list[Undo] = []
    done = []
    try:
        for prefix in ("managed", "unattended_upgrades", "sysctl", "ssh"):
            if prefix in groups:
                undo.append(APPLY[prefix](ctx, *groups[prefix]))
                done.append(prefix)
    except CommandFailed as exc:
        for step in reversed(undo):
            step()
        extra = f" (the {', '.join(done)} changes of this command were undone)" if done else ""
        raise CommandFailed(f"{exc}{extra}")
    keys = sorted([*values, *unset])
    return f"set_config applied: {', '.join(keys)}."


def _check(groups: dict) -> list[str]:
    problems = []
    for prefix, (set_, drop) in groups.items():
        for key in [*set_, *drop]:
            if prefix == "os":
                problems.append(f"{key}: os.* settings are read from /etc/os-release and cannot be set")
            elif prefix == "sysctl" and not SYSCTL_KEY.match(key[7:]):
                problems.append(f"{key}: not a kernel parameter name such as sysctl.net.ipv4.ip_forward")
            elif prefix == "ssh" and not SSH_NAME.match(key[4:]):
                problems.append(f"{key}: not an sshd setting such as ssh.password_auth or ssh.maxstartups")
            elif prefix == "ssh" and key[4:] in SSH_STRUCTURE:
                problems.append(f"{key}: {key[4:].capitalize()} is sshd_config structure, not a setting the agent sets")
            elif prefix == "unattended_upgrades" and key != unattended.KEY:
                problems.append(f"{key}: the only unattended_upgrades setting is {unattended.KEY}")
        for key, value in set_.items():
            try:
                if prefix in ("sysctl", "ssh"):
                    _text(key, value, yes_no=prefix == "ssh")
                elif prefix == "unattended_upgrades" and not isinstance(value, bool):
                    problems.append(f"{key}: must be true or false")
            except ValueError as exc:
                problems.append(str(exc))
    return problems


def _restore(ctx: Context, path: str, old: str | None) -> Undo:
    return lambda: ctx.write(path, old)


# --- managed settings file --------------------------------------------------------------------


def apply_managed(ctx: Context, set_: dict, drop: list) -> Undo:
    path = ctx.config.managed_settings_file
    old = ctx.host.read_abs(path)
    try:
        current = json.loads(old) if old else {}
    except ValueError:
        current = {}
    current.update(set_)
    for key in drop:
        current.pop(key, None)
    ctx.write(path, json.dumps(dict(sorted(current.items())), indent=1) + "\n", mode=0o644)
    return _restore(ctx, path, old)


# --- unattended upgrades ----------------------------------------------------------------------


def apply_unattended(ctx: Context, set_: dict, drop: list) -> Undo:
    path = ctx.config.apt_conf_file
    old = ctx.host.read_abs(path)
    if drop:
        ctx.write(path, None)
        return _restore(ctx, path, old)
    enable = set_[unattended.KEY]
    if enable and unattended.PACKAGE not in _packages(ctx):
        raise CommandFailed(
            f"{unattended.PACKAGE} is not installed: install it first (install_app {unattended.PACKAGE})."
        )
    flag = "1" if enable else "0"
    text = (
        f"// {HEADER.format(what='unattended-upgrades setting')}\n"
        f'APT::Periodic::Update-Package-Lists "{flag}";\n'
        f'APT::Periodic::Unattended-Upgrade "{flag}";\n'
    )
    ctx.write(path, text)
    if not ctx.dry_run:
        now = unattended.collect(ctx.host, unattended.PACKAGE in _packages(ctx))[unattended.KEY]
        if now != enable:
            ctx.write(path, old)
            raise CommandFailed(
                f"{unattended.KEY} stays {json.dumps(now)}: another apt.conf.d file read later sets "
                "APT::Periodic::Unattended-Upgrade"
            )
    return _restore(ctx, path, old)


def _packages(ctx: Context) -> dict:
    return dpkg.installed(ctx.host)


# --- sysctl ---------------------------------------------------------------------------------


def _sysctl_text(values: dict[str, str]) -> str | None:
    if not values:
        return None
    lines = [f"# {HEADER.format(what='kernel parameters')}"] + [f"{k} = {v}" for k, v in sorted(values.items())]
    return "\n".join(lines) + "\n"


def apply_sysctl(ctx: Context, set_: dict, drop: list) -> Undo:
    path = ctx.config.sysctl_file
    old = ctx.host.read_abs(path)
    ours = sysctl_source.parse_conf(old)
    keys = sorted({k[7:] for k in [*set_, *drop]})
    before, unreadable = sysctl_source.read(ctx.host, keys)
    missing = [k for k in keys if k not in before and f"sysctl.{k}" in set_]
    if missing:
        raise CommandFailed(f"No such kernel parameter: {', '.join(missing)} ({'; '.join(unreadable)}).")
    # A dry run must not forget (or learn) the values to restore: it works on a copy.
    originals = dict(ctx.state.data["sysctl_original"]) if ctx.dry_run else ctx.state.data["sysctl_original"]
    new = dict(ours)
    for key, value in set_.items():
        name = key[7:]
        if name not in ours and name in before:
            originals.setdefault(name, before[name])  # the value to go back to when the panel unsets it
        new[name] = _text(key, value)
    for key in drop:
        new.pop(key[7:], None)
    ctx.write(path, _sysctl_text(new))

    def undo():
        ctx.write(path, old)
        for name, value in before.items():
            ctx.run(["sysctl", "-q", "-w", f"{name}={value}"], check=False)

    if new:
        result = ctx.run(["sysctl", "-p", path], timeout=60, check=False)
        if not result.ok:
            undo()
            raise CommandFailed(f"sysctl refused the new values ({result.why()}); the previous ones are restored.")
    for key in drop:
        original = originals.pop(key[7:], None)
        if original is not None:
            ctx.run(["sysctl", "-q", "-w", f"{key[7:]}={original}"], check=False)
        else:
            ctx.note(f"{key[7:]}: no value from before the panel set it is known; the current value stays")
    return undo


# --- sshd -------------------------------------------------------------------------------------


def _ssh_text(lines: dict[str, str]) -> str | None:
    if not lines:
        return None
    body = [f"{keyword} {value}" for keyword, value in sorted(lines.items(), key=lambda kv: kv[0].lower())]
    return f"# {HEADER.format(what='ssh.* settings')}\n" + "\n".join(body) + "\n"


def _parse_dropin(text: str | None) -> dict[str, str]:
    lines = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, value = line.partition(" ")
            lines[keyword] = value.strip()
    return lines


def apply_ssh(ctx: Context, set_: dict, drop: list) -> Undo:
    path, config = ctx.config.ssh_dropin, ctx.config.sshd_config
    old = ctx.host.read_abs(path)
    lines = _parse_dropin(old)
    by_lower = {k.lower(): k for k in lines}
    for key in drop:
        lines.pop(by_lower.get(sshd_source.keyword_for(key[4:]).lower(), ""), None)
    wanted = {}
    for key, value in set_.items():
        keyword = sshd_source.keyword_for(key[4:])
        lines.pop(by_lower.get(keyword.lower(), ""), None)
        lines[keyword] = wanted[keyword] = _text(key, value, yes_no=True)
    ctx.write(path, _ssh_text(lines))

    def restore():
        ctx.write(path, old)

    sshd_source.ensure_privsep_dir()
    check = ctx.run(["sshd", "-t", "-f", config], timeout=30, check=False)
    if not check.ok:
        restore()
        raise CommandFailed(f"sshd -t refused the new configuration ({check.why()}); the previous file is restored.")
    if not ctx.dry_run:
        _verify_effective(ctx, wanted, restore)
    _reload_sshd(ctx, restore)
    return lambda: (restore(), _reload_sshd(ctx, lambda: None))


def _verify_effective(ctx: Context, wanted: dict[str, str], restore: Undo) -> None:
    """sshd keeps the first value it reads for a keyword: make sure ours is the one it uses."""
    effective = sshd_source.effective(ctx.host)
    for keyword, value in wanted.items():
        got = effective.get(keyword.lower())
        got = sshd_source.SYNONYMS.get((keyword.lower(), got), got)
        if got is not None and got.lower() != value.lower():
            restore()
            raise CommandFailed(
                f"sshd would still use {keyword} {got}: a file read before {ctx.config.ssh_dropin} "
                "sets it first (sshd keeps the first value); the previous file is restored."
            )


def _reload_sshd(ctx: Context, restore: Undo) -> None:
    if not ctx.host.systemd_running:
        why = f"systemd is not the service manager here (PID 1 is {ctx.host.pid1()})"
        if ctx.dry_run:
            ctx.note(f"would not reload sshd: {why}")
        else:
            ctx.note(f"{why}: sshd was not reloaded; the new settings apply when sshd next starts.")
        return
    result = ctx.run(["systemctl", "try-reload-or-restart", "--", ctx.config.ssh_service], timeout=120, check=False)
    if not result.ok:
        restore()
        ctx.run(["systemctl", "try-reload-or-restart", "--", ctx.config.ssh_service], timeout=120, check=False)
        raise CommandFailed(
            f"Reloading {ctx.config.ssh_service} failed ({result.why()}); the previous file is restored."
        )


APPLY = {"managed": apply_managed, "unattended_upgrades": apply_unattended, "sysctl": apply_sysctl, "ssh": apply_ssh}
