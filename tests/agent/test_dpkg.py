"""Installed packages from `dpkg-query -W`, on captured Debian 12 and written Ubuntu 24.04 output."""

from governance_agent.sources import Collector, dpkg

from .conftest import fixture_text


def test_every_installed_debian_12_package_is_an_app_with_its_version():
    packages = dpkg.parse_packages(fixture_text("debian12/dpkg-query.txt"))
    assert len(packages) == 787
    assert packages["base-files"]["version"] == "12.4+deb12u11"
    assert packages["apt"] == {"version": "2.6.1", "full_version": "2.6.1", "arch": "amd64"}


def test_the_epoch_is_left_out_of_the_reported_version_and_kept_for_apt():
    packages = dpkg.parse_packages(fixture_text("debian12/dpkg-query.txt"))
    ssh = packages["openssh-server"]
    assert ssh["version"] == "9.2p1-2+deb12u10"
    assert ssh["full_version"] == "1:9.2p1-2+deb12u10"
    assert dpkg.strip_epoch("2:9.1.0016-1ubuntu7.2") == "9.1.0016-1ubuntu7.2"
    assert dpkg.strip_epoch("1.0:weird") == "1.0:weird"  # not an epoch


def test_removed_half_installed_and_deselected_ubuntu_packages_are_not_apps():
    packages = dpkg.parse_packages(fixture_text("ubuntu2404/dpkg-query.txt"))
    assert "linux-image-6.8.0-31-generic" not in packages  # config-files: removed, not purged
    assert "zstd" not in packages  # half-configured
    assert "ubuntu-advantage-tools" not in packages  # deinstall
    assert packages["linux-image-6.8.0-45-generic"]["version"] == "6.8.0-45.45"
    # libc6 is installed for amd64 and i386: one app.
    assert packages["libc6"]["arch"] == "amd64"
    assert len(packages) == 29


def test_configured_globs_select_the_reported_packages():
    packages = dpkg.parse_packages(fixture_text("ubuntu2404/dpkg-query.txt"))
    assert sorted(dpkg.select(packages, ["nginx*", "openssh-server"])) == ["nginx", "nginx-common", "openssh-server"]
    assert dpkg.select(packages, ["*"]) == packages


def test_names_and_versions_longer_than_the_panel_takes_are_left_out_with_a_note():
    packages = {"ok": {"version": "1.0"}, "x" * 101: {"version": "1"}, "long-version": {"version": "1." * 40}}
    kept, notes = dpkg.reportable(packages)
    assert list(kept) == ["ok"]
    assert len(notes) == 2 and "longer than the panel accepts" in notes[0]


def test_installed_reads_the_configured_dpkg_database(scratch):
    scratch.package("gov-tool", "1:2.0-1")
    scratch.install("gov-tool")
    packages = dpkg.installed(scratch.host())
    assert packages == {"gov-tool": {"version": "2.0-1", "full_version": "1:2.0-1", "arch": "all"}}


def test_when_dpkg_cannot_answer_the_last_good_packages_are_reported_not_none(scratch):
    """An empty app list would tell the panel every package was removed. dpkg-query fails for real here
    (its status file is garbage), after a restart: the value comes from the state file."""
    scratch.package("gov-tool", "2.0-1")
    scratch.install("gov-tool")
    state = scratch.state()
    Collector(scratch.host(report={"updates": False}), state).collect()
    state.save()
    (scratch.root / "var/lib/dpkg/status").write_text("this is not\na dpkg status file\n")
    report = Collector(scratch.host(report={"updates": False}), scratch.state()).collect()
    assert report.payload["apps"] == [{"name": "gov-tool", "running": True, "version": "2.0-1"}]
    (problem,) = [p for p in report.problems if p.startswith("packages: ")]
    assert problem.startswith("packages: dpkg-query: exit status 2: ")
