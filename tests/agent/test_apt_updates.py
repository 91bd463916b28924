"""Available updates from `apt-get -s dist-upgrade`: captured Debian 12 output (130 upgrades over the
machine's own package lists), written Ubuntu 24.04 output, and a real simulation over a local repository."""

from governance_agent.sources import apt_updates

from .conftest import fixture_text


def test_debian_12_upgrades_and_the_point_release_they_bring():
    upgrades = apt_updates.parse_simulation(fixture_text("debian12/apt-get-s-dist-upgrade.txt"))
    assert len(upgrades) == 130
    by_name = {u["name"]: u for u in upgrades}
    assert by_name["base-files"]["from"] == "12.4+deb12u11" and by_name["base-files"]["to"] == "12.4+deb12u15"
    assert by_name["liblzma5"]["origins"] == ["Debian-Security:12/oldstable-security"]
    found = apt_updates.updates(upgrades, "debian", "12.11")
    assert ("os", "os", "12.15") in found
    assert ("app", "libcap2", "2.66-4+deb12u3+b1") in found  # epoch left out, like the installed version
    assert len(found) == 131


def test_ubuntu_new_kernel_packages_are_not_upgrades_and_multiarch_is_one_app():
    upgrades = apt_updates.parse_simulation(fixture_text("ubuntu2404/apt-get-s-dist-upgrade.txt"))
    names = [u["name"] for u in upgrades]
    assert "linux-image-6.8.0-51-generic" not in names  # newly installed: no installed version
    assert names.count("libc6") == 1
    assert len(upgrades) == 13
    found = apt_updates.updates(upgrades, "ubuntu", "24.04.1")
    assert ("os", "os", "24.04.2") in found  # the point release after the current one
    assert ("app", "openssh-server", "9.6p1-3ubuntu13.8") in found


def test_a_base_files_rebuild_within_the_same_point_release_is_no_os_update():
    rebuild = [
        {"name": "base-files", "from": "12.4+deb12u11", "to": "12.4+deb12u11+b1", "origins": ["Debian:12.11/stable"]}
    ]
    assert apt_updates.updates(rebuild, "debian", "12.11") == [("app", "base-files", "12.4+deb12u11+b1")]


def test_a_real_simulation_over_a_local_repository(scratch):
    scratch.package("gov-web", "1.0-1")
    scratch.base_files(11)
    scratch.install("gov-web", "base-files")
    scratch.package("gov-web", "1.1-1")
    scratch.base_files(12)
    scratch.publish()
    scratch.apt("update")
    upgrades = apt_updates.simulate(scratch.host())
    assert {(u["name"], u["from"], u["to"]) for u in upgrades} == {
        ("gov-web", "1.0-1", "1.1-1"),
        ("base-files", "12.4+deb12u11", "12.4+deb12u12"),
    }
    assert apt_updates.updates(upgrades, "debian", "12.11") == [
        ("app", "base-files", "12.4+deb12u12"),
        ("app", "gov-web", "1.1-1"),
        ("os", "os", "12.12"),
    ]
