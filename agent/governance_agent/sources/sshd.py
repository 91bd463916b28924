"""The effective sshd configuration, from `sshd -T` (what sshd would use, after every drop-in).

Keys are `ssh.<name>`: the friendly names below for the settings policies usually check, or the
keyword itself as `sshd -T` prints it (`ssh.maxstartups`) for the ones listed in
`report.sshd_keywords` or set by the panel. Values read as the panel compares them: yes/no are
booleans, whole numbers are numbers, the rest text; a keyword given several times joins with commas.
"""

from __future__ import annotations

import os

from ._common import SourceError

# friendly key → the sshd_config keyword
FRIENDLY = {
    "password_auth": "PasswordAuthentication",
    "permit_root_login": "PermitRootLogin",
    "pubkey_auth": "PubkeyAuthentication",
    "kbd_interactive_auth": "KbdInteractiveAuthentication",
    "permit_empty_passwords": "PermitEmptyPasswords",
    "x11_forwarding": "X11Forwarding",
    "allow_tcp_forwarding": "AllowTcpForwarding",
    "allow_agent_forwarding": "AllowAgentForwarding",
    "use_pam": "UsePAM",
    "max_auth_tries": "MaxAuthTries",
    "max_sessions": "MaxSessions",
    "login_grace_time": "LoginGraceTime",
    "client_alive_interval": "ClientAliveInterval",
    "client_alive_count_max": "ClientAliveCountMax",
    "port": "Port",
    "log_level": "LogLevel",
    "permit_user_environment": "PermitUserEnvironment",
}
BY_KEYWORD = {keyword.lower(): friendly for friendly, keyword in FRIENDLY.items()}
# sshd -T prints the old spelling of PermitRootLogin's middle value.
SYNONYMS = {("permitrootlogin", "without-password"): "prohibit-password"}
# sshd's privilege separation directory, compiled in (Debian and Ubuntu: /run/sshd). `sshd -T` and
# `sshd -t` refuse to run without it ("Missing privilege separation directory").
PRIVSEP_DIR = "/run/sshd"


def parse_effective(text: str) -> dict[str, str]:
    """{lowercase keyword: value} from `sshd -T` ("keyword value" lines)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        keyword, _, value = line.strip().partition(" ")
        if keyword and keyword.isalnum():
            values.setdefault(keyword.lower(), []).append(value.strip())
    return {k: ",".join(v) for k, v in values.items()}


def typed(value: str):
    if value == "yes":
        return True
    if value == "no":
        return False
    if value.isdecimal() and len(value) < 16:
        return int(value)
    return value


def setting_key(keyword: str) -> str:
    return "ssh." + BY_KEYWORD.get(keyword.lower(), keyword.lower())


def keyword_for(name: str) -> str:
    """The sshd keyword of `ssh.<name>`: a friendly name, or the keyword itself in any case."""
    return FRIENDLY.get(name, name)


def settings(effective: dict[str, str], extra_keywords: list[str]) -> dict:
    """The ssh.* settings to report: the friendly ones, plus `extra_keywords`."""
    wanted = {k.lower() for k in FRIENDLY.values()} | {k.lower() for k in extra_keywords}
    result = {}
    for keyword in sorted(wanted):
        if keyword in effective:
            value = SYNONYMS.get((keyword, effective[keyword]), effective[keyword])
            result[setting_key(keyword)] = typed(value)
    return result


def managed_keywords(dropin_text: str | None) -> list[str]:
    """The keywords in the agent's own drop-in file (the panel set them, so they are reported)."""
    keywords = []
    for line in (dropin_text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keywords.append(line.split()[0].lower())
    return keywords


def ensure_privsep_dir(path: str = PRIVSEP_DIR) -> None:
    """Create sshd's empty privilege separation directory (root, 0755) when it is missing.

    ssh.service makes it on start (RuntimeDirectory=sshd) and systemd removes it when sshd stops;
    /run is emptied at boot. So on a server whose sshd is stopped, socket-activated and not yet
    started, or freshly booted, `sshd -T` and `sshd -t` would fail. Debian's /etc/init.d/ssh creates
    it the same way before it runs `sshd -t` (check_privsep_dir). It is an empty directory in a tmpfs:
    no configuration changes, so a dry run does it too. Not permitted (not root): sshd says why."""
    if os.path.isdir(path):
        return
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
        os.chmod(path, 0o755)  # noqa: S103 - what sshd requires: root-owned, not group- or world-writable
    except OSError:
        pass


def effective(host) -> dict[str, str]:
    ensure_privsep_dir()
    result = host.run(["sshd", "-T", "-f", host.config.sshd_config], timeout=20)
    if not result.ok:
        raise SourceError(f"sshd -T: {result.why()}")
    return parse_effective(result.stdout)


def collect(host) -> dict:
    if not host.has("sshd") or not os.path.exists(host.config.sshd_config):
        return {}  # openssh-server is not installed: nothing to report
    extra = host.config.sshd_keywords + managed_keywords(host.read_abs(host.config.ssh_dropin))
    return settings(effective(host), extra)
