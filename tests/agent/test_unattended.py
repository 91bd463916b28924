"""unattended_upgrades.enabled from `apt-config dump` and the package's presence."""

from governance_agent.sources import unattended

from .conftest import fixture_text


def test_debian_12_without_the_package_or_periodic_settings_is_off():
    options = unattended.parse_dump(fixture_text("debian12/apt-config-dump.txt"))
    assert options["APT::Architecture"] == "amd64"
    assert unattended.enabled(options, package_installed=False) is False
    assert unattended.enabled(options, package_installed=True) is False  # no APT::Periodic here


def test_ubuntu_24_04_with_20auto_upgrades_is_on():
    options = unattended.parse_dump(fixture_text("ubuntu2404/apt-config-dump.txt"))
    assert unattended.periodic_value(options, "Unattended-Upgrade") == 1
    assert unattended.enabled(options, package_installed=True) is True
    assert unattended.enabled(options, package_installed=False) is False


def test_periodic_values_in_days_always_and_off():
    assert unattended.periodic_value({"APT::Periodic::Unattended-Upgrade": "always"}, "Unattended-Upgrade") == 1
    assert unattended.periodic_value({"APT::Periodic::Unattended-Upgrade": "7d"}, "Unattended-Upgrade") == 7
    assert unattended.periodic_value({"APT::Periodic::Unattended-Upgrade": "0"}, "Unattended-Upgrade") == 0


def test_apt_config_reads_the_scratch_configuration(scratch):
    (scratch.root / "etc/apt/apt.conf.d/20auto-upgrades").write_text('APT::Periodic::Unattended-Upgrade "1";\n')
    assert unattended.collect(scratch.host(), package_installed=True) == {"unattended_upgrades.enabled": True}
