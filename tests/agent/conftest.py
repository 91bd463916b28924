"""Agent test fixtures: real .deb packages in a local apt repository, a scratch root for apt and dpkg,
the captured tool output, and a guard that the machine's own packages are never touched.

The agent is its own package (agent/governance_agent); the tests import it from the source tree.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.base import IN_CI

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "agent"))

from governance_agent.config import from_dict  # noqa: E402
from governance_agent.store import State  # noqa: E402
from governance_agent.system import Host  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
HOST_DPKG_STATUS = Path("/var/lib/dpkg/status")


def run_unshared(unshare: list[str], script: str, *args: str, prelude: str = "") -> str:
    """Run the Python `script` in new namespaces (`unshare --net`, `--mount`...), agent/ as its argv[1]
    and `args` after it; returns its stdout. What it changes there (net.* kernel parameters, a tmpfs
    mounted by the shell `prelude`) belongs to that namespace alone, never to the machine."""
    require_tools("unshare")
    probe = subprocess.run(["unshare", *unshare, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        message = f"unshare {' '.join(unshare)} is not permitted here ({probe.stderr.strip()})"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    inner = [sys.executable, "-c", script, str(ROOT / "agent"), *args]
    shell = ["sh", "-c", f'{prelude} && exec "$@"', "sh"] if prelude else []
    out = subprocess.run(
        ["unshare", *unshare, *shell, *inner],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]
    if missing:
        message = f"needs {', '.join(missing)} (Debian packages: dpkg-dev, apt, openssh-server, procps)"
        if IN_CI:
            pytest.fail(message + " in CI")
        pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _host_packages_untouched():
    """Every agent test runs apt and dpkg inside scratch roots: the machine's own dpkg database must be
    byte for byte what it was before the first test."""
    before = hashlib.sha256(HOST_DPKG_STATUS.read_bytes()).hexdigest() if HOST_DPKG_STATUS.exists() else None
    yield
    after = hashlib.sha256(HOST_DPKG_STATUS.read_bytes()).hexdigest() if HOST_DPKG_STATUS.exists() else None
    assert after == before, "the agent tests changed the machine's own /var/lib/dpkg/status"


class ScratchSystem:
    """A system root in a temporary directory with its own apt configuration, dpkg database and a
    local apt repository (`file:` source, indexed by dpkg-scanpackages) of packages built with
    dpkg-deb. apt-get and dpkg run for real, but only inside the root (APT_CONFIG, dpkg --root)."""

    def __init__(self, base: Path):
        require_tools("dpkg-deb", "dpkg-scanpackages", "apt-get", "dpkg")
        self.base, self.root, self.repo = base, base / "root", base / "repo"
        for sub in (
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "var/log/apt",
            "etc/sysctl.d",
            "etc/ssh/sshd_config.d",
        ):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for name in ("status", "available"):
            (self.root / "var/lib/dpkg" / name).touch()
        self.repo.mkdir()
        (self.root / "etc/apt/sources.list").write_text(f"deb [trusted=yes] file:{self.repo} ./\n")
        # Outside the root: inside, apt would read it a second time as the root's own apt.conf.
        self.apt_config = base / "apt-scratch.conf"
        self.apt_config.write_text(
            textwrap.dedent(f"""\
                Dir "{self.root}/";
                Dir::State::status "{self.root}/var/lib/dpkg/status";
                DPkg::Options {{ "--root={self.root}"; "--log={self.root}/var/log/dpkg.log"; "--force-not-root"; }};
                DPkg::Use-Pty "false";
                Acquire::Languages "none";
            """)
        )
        self.published = False

    def package(self, name, version, *, files=None, depends="", conflicts="", arch="all") -> Path:
        """Build <name>_<version>.deb into the repository; `files` maps paths in the root to their text."""
        build = self.base / "build" / f"{name}-{version}"
        (build / "DEBIAN").mkdir(parents=True)
        control = [
            f"Package: {name}",
            f"Version: {version}",
            f"Architecture: {arch}",
            "Maintainer: Agent Tests <tests@example.com>",
            "Section: misc",
            "Priority: optional",
            f"Description: {name}, a package the agent tests build",
        ]
        if depends:
            control.append(f"Depends: {depends}")
        if conflicts:
            control.append(f"Conflicts: {conflicts}")
        (build / "DEBIAN/control").write_text("\n".join(control) + "\n")
        for path, text in (files or {f"/usr/share/doc/{name}/VERSION": version + "\n"}).items():
            target = build / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        deb = self.repo / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        subprocess.run(
            ["dpkg-deb", "--build", "--root-owner-group", str(build), str(deb)], check=True, capture_output=True
        )
        self.published = False
        return deb

    def base_files(self, point: int) -> Path:
        """A stand-in for Debian's base-files 12.4+deb12u<point>: it ships /etc/debian_version 12.<point>."""
        os_release = (FIXTURES / "debian12/os-release").read_text()
        return self.package(
            "base-files",
            f"12.4+deb12u{point}",
            files={"/etc/debian_version": f"12.{point}\n", "/etc/os-release": os_release},
        )

    def publish(self) -> None:
        packages = subprocess.run(
            ["dpkg-scanpackages", "--multiversion", "."], cwd=self.repo, check=True, capture_output=True, text=True
        ).stdout
        (self.repo / "Packages").write_text(packages)
        self.published = True

    def apt(self, *args) -> subprocess.CompletedProcess:
        """apt-get inside the root, as a test's own set-up step."""
        env = {**os.environ, "APT_CONFIG": str(self.apt_config), "DEBIAN_FRONTEND": "noninteractive"}
        return subprocess.run(["apt-get", "-q", *args], env=env, check=True, capture_output=True, text=True)

    def install(self, *targets) -> None:
        if not self.published:
            self.publish()
        self.apt("update")
        self.apt("install", "-y", *targets)

    def installed(self) -> dict[str, str]:
        out = subprocess.run(
            [
                "dpkg-query",
                f"--admindir={self.root}/var/lib/dpkg",
                "-W",
                "-f",
                "${Package}\t${Version}\t${db:Status-Status}\n",
            ],
            capture_output=True,
            text=True,
        ).stdout
        return {n: v for n, v, s in (line.split("\t") for line in out.splitlines()) if s == "installed"}

    def dpkg_log(self) -> str:
        log = self.root / "var/log/dpkg.log"
        return log.read_text() if log.exists() else ""

    def config(self, **tables):
        """An agent Config for this root (panel on a closed port unless given), merged with `tables`."""
        return from_dict(self.config_data(**tables), insecure_dev=True)

    def config_data(self, **tables) -> dict:
        """The configuration `config` reads, as the TOML tables (for an agent in another process)."""
        data = {
            "panel": {"url": "http://127.0.0.1:9", "name": "scratch"},
            "agent": {
                "state_dir": str(self.base / "state"),
                "credential_file": str(self.base / "state/credential.json"),
                "managed_settings_file": str(self.root / "etc/governance-agent/managed-settings.json"),
            },
            "report": {"apt_update_interval": 0},
            "health": {"listen": "127.0.0.1:0"},
            "system": {"root": str(self.root), "apt_config": str(self.apt_config)},
        }
        for table, values in tables.items():
            data.setdefault(table, {}).update(values)
        return data

    def host(self, **tables) -> Host:
        return Host.from_config(self.config(**tables))

    def state(self) -> State:
        return State(self.base / "state/state.json")


@pytest.fixture
def scratch(tmp_path):
    return ScratchSystem(tmp_path)


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """agent/ pip-installed into a scratch prefix (from a copy: an in-tree build would leave files in agent/)."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "src"
    shutil.copytree(ROOT / "agent", source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    prefix = base / "prefix"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--prefix",
            str(prefix),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    env = {**os.environ, "PYTHONPATH": str(site)}
    return prefix / "bin/governance-agent", site, env


def agent_cli(installed, *args, **kw):
    script, _site, env = installed
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=120, **kw)
