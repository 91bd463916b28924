"""A real OpenSSH server on a free loopback port, serving bare Git repositories made by the test."""

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gitops.repoformat import render_file

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tools_available() -> bool:
    return Path(SSHD).exists() and shutil.which("git") is not None and shutil.which("ssh-keygen") is not None


def keygen(path: Path, kind: str = "ed25519") -> str:
    """Write a key pair at `path` and `path`.pub; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "test", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class SSHServer:
    root: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    authorized: list[str] = field(default_factory=list)
    host_key_path: Path | None = None

    @property
    def user(self) -> str:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name

    def url(self, repo: "GitRepo") -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo.path}"

    def known_hosts_line(self) -> str:
        """The server's known_hosts line, as `ssh-keyscan -p PORT 127.0.0.1` prints it."""
        return f"[127.0.0.1]:{self.port} {self.host_key_path.with_suffix('.pub').read_text().strip()}"

    def authorize(self, public_key: str):
        self.authorized.append(public_key.strip())
        (self.root / "authorized_keys").write_text("\n".join(self.authorized) + "\n")

    def new_host_key(self) -> str:
        """Replace the server's host key (as a reinstalled or impostor server would)."""
        for p in self.root.glob("host_ed25519*"):
            p.unlink()
        self.host_key_path = self.root / "host_ed25519"
        return keygen(self.host_key_path)

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        if self.host_key_path is None:
            self.new_host_key()
        (self.root / "authorized_keys").touch()
        self.port = self.port or free_port()
        config = self.root / "sshd_config"
        # Running as the test user (root here): no PAM, no privilege separation tricks, own PidFile.
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key_path}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile {self.root / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAcceptEnv GIT_PROTOCOL\n"
            "LogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
        log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (self.root / "sshd.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def restart(self):
        self.stop()
        return self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()


class GitRepo:
    """A bare repository plus a work tree the test commits to with the git CLI."""

    def __init__(self, root: Path, branch: str = "main"):
        self.path = root / "fleet-config.git"
        self.work = root / "work"
        self.branch = branch
        env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root)}
        self.env = {
            **os.environ,
            **env,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        }
        self._git("init", "-q", "--bare", "-b", branch, str(self.path))
        self._git("init", "-q", "-b", branch, str(self.work))

    def _git(self, *args, cwd=None):
        return subprocess.run(["git", *args], cwd=cwd, env=self.env, check=True, capture_output=True, text=True).stdout

    def write(self, path: str, text: str):
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def write_config(self, path: str, settings=None, apps=None):
        self.write(path, render_file(settings or {}, apps or {}))

    def remove(self, path: str):
        (self.work / path).unlink()

    def commit(self, message: str = "change") -> str:
        self._git("add", "-A", cwd=self.work)
        self._git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        self._git("push", "-q", str(self.path), f"HEAD:refs/heads/{self.branch}", cwd=self.work)
        return self._git("rev-parse", "HEAD", cwd=self.work).strip()
