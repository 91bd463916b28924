"""App and OS commands with real apt-get and dpkg, inside a scratch root, from a local apt repository
of packages built with dpkg-deb (the machine's own packages are never touched: see conftest)."""

import pytest
from governance_agent import actions
from governance_agent.system import Host


@pytest.fixture
def repo(scratch):
    scratch.package("gov-web", "1.0-1")
    scratch.package("gov-web", "1.1-1")
    scratch.package("gov-web", "2.0-1")
    scratch.publish()
    return scratch


def run(scratch, kind, params, **kw):
    return actions.execute(scratch.host(), scratch.state(), kind, params, **kw)


def test_install_app_installs_the_newest_version_with_apt_get(repo):
    outcome = run(repo, "install_app", {"app": "gov-web"})
    assert outcome.status == "completed", outcome.error
    assert repo.installed() == {"gov-web": "2.0-1"}
    assert "$ apt-get -q update" in outcome.output
    assert "$ apt-get install -y -q -o Dpkg::Options::=--force-confdef" in outcome.output
    assert "-- gov-web\n" in outcome.output and "Setting up gov-web (2.0-1)" in outcome.output
    assert "[exit status 0]" in outcome.output and outcome.output.endswith("gov-web 2.0-1 is installed.")


def test_install_app_with_a_version_installs_exactly_that_version(repo):
    outcome = run(repo, "install_app", {"app": "gov-web", "version": "1.0-1"})
    assert outcome.status == "completed", outcome.error
    assert repo.installed() == {"gov-web": "1.0-1"}


def test_update_app_goes_forward_and_back_so_a_rollback_works(repo):
    repo.install("gov-web=1.0-1")
    assert run(repo, "update_app", {"app": "gov-web", "version": "1.1-1"}).status == "completed"
    assert repo.installed() == {"gov-web": "1.1-1"}
    back = run(repo, "update_app", {"app": "gov-web", "version": "1.0-1"})
    assert back.status == "completed", back.error
    assert "--allow-downgrades" in back.output and repo.installed() == {"gov-web": "1.0-1"}


def test_update_app_of_a_package_that_is_not_installed_fails_with_the_reason(repo):
    outcome = run(repo, "update_app", {"app": "gov-web", "version": "1.1-1"})
    assert outcome.status == "failed"
    assert outcome.error == "gov-web is not installed (install_app installs it)."
    assert repo.installed() == {}


def test_a_version_the_sources_do_not_offer_fails_naming_those_they_do(repo):
    outcome = run(repo, "install_app", {"app": "gov-web", "version": "9.9"})
    assert outcome.status == "failed"
    assert outcome.error == (
        "gov-web 9.9 is not available from the configured apt sources (available: 2.0-1, 1.1-1, 1.0-1)."
    )
    assert repo.installed() == {}


def test_the_panel_sees_versions_without_the_epoch_and_the_agent_puts_it_back(scratch):
    scratch.package("gov-epoch", "1:3.0-1")
    scratch.package("gov-epoch", "1:3.1-1")
    scratch.publish()
    outcome = run(scratch, "install_app", {"app": "gov-epoch", "version": "3.0-1"})
    assert outcome.status == "completed", outcome.error
    assert "-- gov-epoch=1:3.0-1" in outcome.output
    assert scratch.installed() == {"gov-epoch": "1:3.0-1"}
    assert outcome.output.endswith("gov-epoch 3.0-1 is installed.")


def test_installing_what_is_installed_changes_nothing(repo):
    repo.install("gov-web=1.1-1")
    before = repo.dpkg_log()
    outcome = run(repo, "install_app", {"app": "gov-web"})
    assert outcome.status == "completed"
    assert outcome.output.endswith("gov-web 1.1-1 is already installed; nothing to do.")
    assert repo.dpkg_log() == before and repo.installed() == {"gov-web": "1.1-1"}


def test_uninstall_app_removes_the_package(repo):
    repo.install("gov-web")
    outcome = run(repo, "uninstall_app", {"app": "gov-web"})
    assert outcome.status == "completed", outcome.error
    assert "$ apt-get remove -y -q" in outcome.output and repo.installed() == {}
    assert run(repo, "uninstall_app", {"app": "gov-web"}).output.endswith("is not installed; nothing to do.")


def test_uninstall_that_would_take_other_packages_with_it_is_refused(scratch):
    scratch.package("gov-lib", "1.0")
    scratch.package("gov-app", "1.0", depends="gov-lib")
    scratch.install("gov-app")
    outcome = run(scratch, "uninstall_app", {"app": "gov-lib"})
    assert outcome.status == "failed"
    assert outcome.error == ("Removing gov-lib would also remove gov-app; nothing was changed (remove those first).")
    assert scratch.installed() == {"gov-lib": "1.0", "gov-app": "1.0"}


def test_an_install_that_would_remove_a_conflicting_package_is_refused(scratch):
    scratch.package("gov-mta-a", "1.0")
    scratch.package("gov-mta-b", "1.0", conflicts="gov-mta-a")
    scratch.install("gov-mta-a")
    outcome = run(scratch, "install_app", {"app": "gov-mta-b"})
    assert outcome.status == "failed"
    assert outcome.error == "Installing gov-mta-b would remove gov-mta-a; nothing was changed."
    assert scratch.installed() == {"gov-mta-a": "1.0"}


def test_update_os_upgrades_to_the_point_release_and_reports_it(scratch):
    scratch.base_files(11)
    scratch.package("gov-web", "1.0-1")
    scratch.install("base-files", "gov-web")
    scratch.base_files(12)
    scratch.package("gov-web", "1.1-1")
    scratch.publish()
    outcome = run(scratch, "update_os", {"version": "12.12"})
    assert outcome.status == "completed", outcome.error
    assert "$ apt-get upgrade -y -q" in outcome.output and "--with-new-pkgs" in outcome.output
    assert outcome.output.endswith("The OS is at 12.12.")
    assert scratch.installed() == {"base-files": "12.4+deb12u12", "gov-web": "1.1-1"}
    assert (scratch.root / "etc/debian_version").read_text() == "12.12\n"


def test_update_os_says_which_updates_apt_kept_back(scratch):
    """The agent reports updates from a full upgrade's simulation, and the OS update removes nothing:
    an update whose new version conflicts with an installed package stays offered (the panel's update
    rules still count it), so the result names it instead of only "The OS is at …"."""
    scratch.base_files(11)
    scratch.package("gov-old", "1.0")
    scratch.package("gov-mail", "1.0")
    scratch.install("base-files", "gov-old", "gov-mail")
    scratch.base_files(12)
    scratch.package("gov-mail", "2.0", conflicts="gov-old")
    scratch.publish()
    outcome = run(scratch, "update_os", {"version": "12.12"})
    assert outcome.status == "completed", outcome.error
    assert outcome.output.endswith(
        "The OS is at 12.12. Still upgradable, kept back by apt: gov-mail"
        " (an upgrade removes nothing; update_app says what taking one would remove)."
    )
    assert scratch.installed() == {"base-files": "12.4+deb12u12", "gov-old": "1.0", "gov-mail": "1.0"}


def test_update_os_to_a_release_not_offered_fails_after_upgrading_what_there_is(scratch):
    scratch.base_files(11)
    scratch.install("base-files")
    outcome = run(scratch, "update_os", {"version": "12.13"})
    assert outcome.status == "failed"
    assert outcome.error == "The OS is at 12.11 after the upgrade; 12.13 is not offered by the configured apt sources."


def test_update_os_never_downgrades(scratch):
    scratch.base_files(11)
    scratch.install("base-files")
    before = scratch.dpkg_log()
    outcome = run(scratch, "update_os", {"version": "12.4"})
    assert outcome.status == "failed" and outcome.error == "The OS is at 12.11; apt cannot downgrade it to 12.4."
    assert scratch.dpkg_log() == before


def lists(scratch) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (scratch.root / "var/lib/apt/lists").iterdir()}


def test_dry_run_plans_the_apt_commands_and_changes_nothing(repo):
    repo.apt("update")  # the lists a machine has (dry run does not refresh them)
    lists_before = lists(repo)
    outcome = run(repo, "install_app", {"app": "gov-web", "version": "1.1-1"}, dry_run=True)
    assert outcome.status == "failed" and outcome.error == actions.DRY_RUN_REASON
    assert "would run: DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none apt-get -q update" in outcome.output
    assert "would run: DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none apt-get install -y -q" in (
        outcome.output
    )
    assert "--allow-downgrades -- gov-web=1.1-1" in outcome.output
    assert repo.installed() == {} and repo.dpkg_log() == "" and lists(repo) == lists_before


def test_bad_names_never_reach_apt_and_unknown_kinds_fail_with_the_reason(repo):
    outcome = run(repo, "install_app", {"app": "--reinstall"})
    assert outcome.status == "failed" and outcome.error == "'--reinstall' is not a Debian package name."
    assert outcome.output == ""
    unknown = run(repo, "reboot", {})
    assert unknown.status == "failed" and unknown.error == "This agent does not handle the command kind 'reboot'."


def recording_host(scratch, asked: list) -> Host:
    """The scratch host, with every argument list it runs appended to `asked`."""

    class Recording(Host):
        def run(self, argv, **kwargs):
            asked.append(list(argv))
            return super().run(argv, **kwargs)

    return Recording.from_config(scratch.config())


HOSTILE_NAMES = ["gov-web; rm -rf /", "$(reboot)", "`id`", "gov-web other", "gov-web\n", "gov-web|cat", "../x", "-o"]


@pytest.mark.parametrize("kind", ["install_app", "update_app", "uninstall_app", "restart_app"])
def test_a_name_with_shell_or_option_characters_is_refused_before_any_tool_runs(repo, kind):
    """No shell ever sees a name (every tool gets an argument list), and a name that is not a Debian
    package name does not reach apt at all: not even as one argument after `--`."""
    asked = []
    host = recording_host(repo, asked)
    for name in HOSTILE_NAMES:
        outcome = actions.execute(host, repo.state(), kind, {"app": name, "version": "1.0-1"})
        assert outcome.status == "failed" and outcome.error == f"'{name}' is not a Debian package name."
        assert outcome.output == ""
    bad_version = actions.execute(host, repo.state(), "install_app", {"app": "gov-web", "version": "1.0-1 --reinstall"})
    assert bad_version.error == "'1.0-1 --reinstall' is not a Debian package version."
    assert asked == [] and repo.installed() == {} and repo.dpkg_log() == ""


def test_the_package_is_one_argument_after_the_end_of_options(repo):
    asked = []
    outcome = actions.execute(recording_host(repo, asked), repo.state(), "install_app", {"app": "gov-web"})
    assert outcome.status == "completed", outcome.error
    (install,) = [argv for argv in asked if argv[:2] == ["apt-get", "install"]]
    assert install[-2:] == ["--", "gov-web"]


def test_an_install_waits_for_dpkgs_lock_instead_of_failing(repo):
    """apt-daily or unattended-upgrades may hold dpkg's lock: the agent waits for it (DPkg::Lock::Timeout)."""
    import fcntl
    import threading

    repo.apt("update")
    lock = open(repo.root / "var/lib/dpkg/lock-frontend", "w")  # noqa: SIM115 - released by the timer
    fcntl.lockf(lock, fcntl.LOCK_EX)
    threading.Timer(2.0, lock.close).start()
    outcome = run(repo, "install_app", {"app": "gov-web", "version": "1.0-1"})
    assert outcome.status == "completed", outcome.error
    assert "-o DPkg::Lock::Timeout=300" in outcome.output and "Waiting for cache lock" in outcome.output
    assert repo.installed() == {"gov-web": "1.0-1"}
