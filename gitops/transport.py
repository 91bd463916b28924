"""Git over SSH, read-only, with a pinned host key.

dulwich speaks the Git protocol; this module gives it an SSH vendor built on paramiko that
  * trusts exactly one host key (the one an admin confirmed) and rejects any other (RejectPolicy),
  * authenticates with the repository's private key only (no agent, no ~/.ssh keys),
  * runs nothing but `git-upload-pack` (fetch only: the panel never pushes).
"""

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko
from dulwich.client import SSHGitClient, SSHVendor
from dulwich.repo import Repo

from .sshkeys import fingerprint

SCP_RE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*|/.*)$")
SSH_URL_RE = re.compile(r"^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)$")


class RemoteError(Exception):
    """The remote could not be used: unreachable, wrong host key, refused key, missing branch."""


@dataclass(frozen=True)
class RemoteURL:
    user: str
    host: str
    port: int
    path: str


def parse_url(url: str) -> RemoteURL:
    """`ssh://user@host:port/path` or scp-like `user@host:path` (port 22)."""
    url = url.strip()
    match = SSH_URL_RE.match(url)
    if match:
        return RemoteURL(match["user"] or "git", match["host"].strip("[]"), int(match["port"] or 22), match["path"])
    if "://" not in url:
        match = SCP_RE.match(url)
        if match:
            return RemoteURL(match["user"] or "git", match["host"], 22, match["path"])
    raise ValueError("Use an SSH URL: ssh://user@host:port/path/repo.git or git@host:path/repo.git")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _ChannelWrapper:
    """What dulwich expects from a vendor's connection: read/write/close/can_read/stderr."""

    def __init__(self, client: paramiko.SSHClient, channel: paramiko.Channel):
        self.client, self.channel = client, channel
        self.channel.setblocking(True)
        self.stderr = channel.makefile_stderr("rb")

    def can_read(self) -> bool:
        return self.channel.recv_ready()

    def write(self, data: bytes) -> None:
        self.channel.sendall(data)

    def read(self, n: int | None = None) -> bytes:
        if n is None:
            chunks = []
            while chunk := self.channel.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
        data = b""
        while len(data) < n:
            chunk = self.channel.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def close(self) -> None:
        self.channel.close()
        self.client.close()


class PinnedHostKeySSHVendor(SSHVendor):
    """A paramiko SSH vendor for dulwich that accepts only the pinned host key."""

    def __init__(self, *, host_key: paramiko.PKey, pkey: paramiko.PKey, timeout: float = 15.0):
        self.host_key, self.pkey, self.timeout = host_key, pkey, timeout

    def run_command(
        self,
        host,
        command,
        username=None,
        port=None,
        password=None,
        key_filename=None,
        ssh_command=None,
        protocol_version=None,
    ):
        command = command.decode() if isinstance(command, bytes) else command
        if not command.startswith("git-upload-pack "):
            raise RemoteError("GitOps access is read-only: only fetching is allowed.")
        port = port or 22
        client = paramiko.SSHClient()
        client.get_host_keys().add(known_hosts_name(host, port), self.host_key.get_name(), self.host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                host,
                port=port,
                username=username,
                pkey=self.pkey,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise RemoteError(
                f"The SSH host key of {host}:{port} has changed: pinned {fingerprint(exc.expected_key)}, "
                f"server presented {fingerprint(exc.key)} ({exc.key.get_name()}). Refusing to connect; "
                "if the change is legitimate, re-pin the host key on the repository page."
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(
                f"{host}:{port} refused the repository's SSH key for user '{username}': "
                "add the public key as a deploy key, or upload the right private key."
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise RemoteError(
                    f"{host}:{port} presented a host key the panel does not know. Refusing to connect."
                ) from exc
            raise RemoteError(f"SSH to {host}:{port} failed: {exc}") from exc
        except OSError as exc:
            client.close()
            raise RemoteError(f"Cannot reach {host}:{port}: {exc.strerror or exc}") from exc
        channel = client.get_transport().open_session(timeout=self.timeout)
        channel.settimeout(max(self.timeout, 120))
        if protocol_version and protocol_version > 0:
            # A server that refuses the variable speaks protocol v0; dulwich copes.
            with contextlib.suppress(paramiko.SSHException):
                channel.update_environment({"GIT_PROTOCOL": f"version={protocol_version}"})
        channel.exec_command(command)
        return _ChannelWrapper(client, channel)


class GitRemote:
    """Fetch one branch of one repository into a local bare mirror."""

    def __init__(self, *, url: str, host_key: paramiko.PKey, pkey: paramiko.PKey, timeout: float = 15.0):
        self.remote = parse_url(url)
        vendor = PinnedHostKeySSHVendor(host_key=host_key, pkey=pkey, timeout=timeout)
        self.client = SSHGitClient(
            self.remote.host, port=self.remote.port, username=self.remote.user, vendor=vendor, quiet=True
        )

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RemoteError:
            raise
        except Exception as exc:  # dulwich/paramiko raise many types for a remote that misbehaves
            message = str(exc).strip() or exc.__class__.__name__
            raise RemoteError(f"Git fetch from {self.remote.host}:{self.remote.port} failed: {message}") from exc

    def head(self, branch: str) -> str:
        """The commit the branch points to (an ls-remote: no objects transferred)."""
        ref = f"refs/heads/{branch}".encode()
        result = self._call(self.client.get_refs, self.remote.path, ref_prefix=[ref])
        refs = getattr(result, "refs", result)
        sha = refs.get(ref)
        if not sha:
            raise RemoteError(f"The repository has no branch '{branch}'.")
        return sha.decode() if isinstance(sha, bytes) else sha

    def fetch(self, branch: str, mirror: Path) -> str:
        """Fetch the branch into the bare repository at `mirror` (created if needed); returns its head."""
        ref = f"refs/heads/{branch}".encode()
        repo = Repo(str(mirror)) if (mirror / "objects").exists() else Repo.init_bare(str(mirror), mkdir=True)
        try:

            def wants(refs, depth=None):
                sha = refs.get(ref)
                if not sha:
                    raise RemoteError(f"The repository has no branch '{branch}'.")
                return [sha] if sha not in repo.object_store else []

            result = self._call(self.client.fetch, self.remote.path, repo, determine_wants=wants, ref_prefix=[ref])
            sha = result.refs[ref]
            repo.refs[ref] = sha
            return sha.decode() if isinstance(sha, bytes) else sha
        finally:
            repo.close()


def read_tree(mirror: Path, commit_sha: str, want) -> dict[str, bytes]:
    """{path: content} of the files in a commit for which want(path) is true."""
    repo = Repo(str(mirror))
    try:
        store = repo.object_store
        commit = store[commit_sha.encode()]
        files: dict[str, bytes] = {}
        stack = [("", commit.tree)]
        while stack:
            prefix, tree_id = stack.pop()
            for entry in store[tree_id].items():
                path = prefix + entry.path.decode("utf-8", "replace")
                if entry.mode & 0o170000 == 0o040000:
                    stack.append((path + "/", entry.sha))
                elif want(path):
                    files[path] = store[entry.sha].data
        return files
    finally:
        repo.close()
