"""OS name and version from /etc/os-release (and Debian's /etc/debian_version), on captured and written files."""

from governance_agent.sources import os_release

from .conftest import fixture_text


def test_debian_12_reports_its_point_release_from_debian_version():
    release = os_release.parse_os_release(fixture_text("debian12/os-release"))
    assert release["ID"] == "debian" and release["VERSION_ID"] == "12"
    assert release["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert os_release.os_version(release, fixture_text("debian12/debian_version")) == "12.11"


def test_ubuntu_24_04_reports_its_point_release_from_version_and_ignores_debian_version():
    release = os_release.parse_os_release(fixture_text("ubuntu2404/os-release"))
    # Ubuntu's debian_version says "trixie/sid": it must not be taken for the OS version.
    assert os_release.os_version(release, fixture_text("ubuntu2404/debian_version")) == "24.04.1"
    assert os_release.os_version(release) == "24.04.1"


def test_a_debian_version_from_another_release_does_not_override_version_id():
    release = {"ID": "debian", "VERSION_ID": "12", "VERSION": "12 (bookworm)"}
    assert os_release.os_version(release, "11.9\n") == "12"
    assert os_release.os_version({"ID": "debian", "VERSION_CODENAME": "trixie"}, "trixie/sid") == ""


def test_quoting_and_comments_follow_os_release_5():
    text = "# comment\nNAME='My OS'\nVERSION_ID=\"1.2\"\nEMPTY=\nBROKEN='x\n"
    assert os_release.parse_os_release(text) == {"NAME": "My OS", "VERSION_ID": "1.2", "EMPTY": ""}


def test_os_settings_name_the_distribution(scratch):
    scratch.base_files(11)
    scratch.install("base-files")
    version, settings = os_release.collect(scratch.host())
    assert version == "12.11"
    assert settings == {"os.id": "debian", "os.name": "Debian GNU/Linux 12 (bookworm)", "os.codename": "bookworm"}


def test_versions_compare_as_dotted_numbers_and_ubuntu_point_releases_follow_each_other():
    assert os_release.newer("12.15", "12.11") and os_release.newer("24.04.1", "24.04")
    assert not os_release.newer("24.04.0", "24.04") and not os_release.newer("", "1")
    assert os_release.point_release_after("24.04") == "24.04.1"
    assert os_release.point_release_after("24.04.1") == "24.04.2"
