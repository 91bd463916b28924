"""The effective sshd configuration from `sshd -T`: captured Debian 12 (OpenSSH 9.2), written Ubuntu
24.04 (OpenSSH 9.6), and a real `sshd -T` over a scratch configuration."""

import subprocess

from governance_agent.sources import sshd

from .conftest import fixture_text, require_tools


def test_debian_12_defaults_read_as_the_panel_compares_them():
    settings = sshd.settings(sshd.parse_effective(fixture_text("debian12/sshd-T.txt")), [])
    assert settings["ssh.password_auth"] is True
    assert settings["ssh.permit_root_login"] == "prohibit-password"  # sshd -T prints without-password
    assert settings["ssh.pubkey_auth"] is True
    assert settings["ssh.max_auth_tries"] == 6
    assert settings["ssh.port"] == 22
    assert settings["ssh.log_level"] == "INFO"
    assert len(settings) == len(sshd.FRIENDLY)


def test_ubuntu_cloud_image_settings_and_a_second_port():
    effective = sshd.parse_effective(fixture_text("ubuntu2404/sshd-T.txt"))
    settings = sshd.settings(effective, ["maxstartups", "channeltimeout"])
    assert settings["ssh.password_auth"] is False
    assert settings["ssh.port"] == "22,2222"  # a keyword given twice joins with commas
    assert settings["ssh.maxstartups"] == "10:30:100"
    assert settings["ssh.channeltimeout"] == "none"


def test_keys_map_to_keywords_both_ways():
    assert sshd.setting_key("PasswordAuthentication") == "ssh.password_auth"
    assert sshd.setting_key("MaxStartups") == "ssh.maxstartups"
    assert sshd.keyword_for("permit_root_login") == "PermitRootLogin"
    assert sshd.keyword_for("maxstartups") == "maxstartups"  # sshd keywords are case-insensitive


def test_the_keywords_the_panel_set_are_reported_too(scratch):
    require_tools("sshd", "ssh-keygen")
    etc = scratch.root / "etc/ssh"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / "key")], check=True)
    (etc / "sshd_config").write_text(f"Include {etc}/sshd_config.d/*.conf\nHostKey {etc}/key\n")
    (etc / "sshd_config.d/00-governance.conf").write_text("# managed\nMaxStartups 5:50:20\nPasswordAuthentication no\n")
    settings = sshd.collect(scratch.host())
    assert settings["ssh.maxstartups"] == "5:50:20"
    assert settings["ssh.password_auth"] is False
