"""Git over SSH, read-only, with a pinned host key.

dulwich speaks the Git protocol; this module gives it an SSH vendor built on paramiko that
  * trusts exactly one host key (the one an admin confirmed) and rejects any other (RejectPolicy),
  * authenticates with the repository's private key only (no agent, no ~/.ssh keys),
  * runs nothing but `git-upload-pack` (fetch only: the panel never pushes).
"""

import contextlib
import logging
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko
from django.core.exceptions import ValidationError
from dulwich.client import SSHGitClient, SSHVendor
from dulwich.objects import Commit, Tag
from dulwich.repo import Repo

from common.net import OutboundRefused, parse_address, resolve_outbound

from .sshkeys import fingerprint

# paramiko logs every failed handshake at ERROR with a traceback; the sync records one line of its
# own (RemoteError), so paramiko's transports log to this channel, which only passes CRITICAL.
PARAMIKO_LOG_CHANNEL = "gitops.ssh"
logging.getLogger(PARAMIKO_LOG_CHANNEL).setLevel(logging.CRITICAL)
CONNECT_TIMEOUT = 10.0

SCP_RE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>[^/].*|/.*)\Z")
SSH_URL_RE = re.compile(r"^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)\Z")


class RemoteError(Exception):
    """The remote could not be used: unreachable, wrong host key, refused key, missing branch."""


@dataclass(frozen=True)
class RemoteURL:
    user: str
    host: str
    port: int
    path: str


def parse_url(url: str) -> RemoteURL:
    """`ssh://user@host:port/path` or scp-like `user@host:path` (port 22). Raises ValueError."""
    url = url.strip()
    if re.search(r"[\x00-\x20\x7f]", url) or re.search("[\ud800-\udfff]", url):
        raise ValueError("The URL cannot contain spaces or control characters.")
    match = SSH_URL_RE.match(url)
    if match:
        remote = RemoteURL(match["user"] or "git", match["host"].strip("[]"), int(match["port"] or 22), match["path"])
        if not 1 <= remote.port <= 65535:
            raise ValueError(f"The port must be a number from 1 to 65535, not {match['port']}.")
    elif "://" not in url and (match := SCP_RE.match(url)):
        remote = RemoteURL(match["user"] or "git", match["host"], 22, match["path"])
    else:
        raise ValueError("Use an SSH URL: ssh://user@host:port/path/repo.git or git@host:path/repo.git")
    try:
        parse_address(f"[{remote.host}]" if ":" in remote.host else remote.host)
    except ValidationError as exc:
        raise ValueError(exc.messages[0]) from None
    return remote


def unreachable(host: str, port: int) -> str:
    """The one message for every way a Git host can fail to answer: refused, silent, unknown name,
    not SSH, or not allowed by OUTBOUND_DENY_NETWORKS (the panel is no port scanner)."""
    return f"The panel could not reach {host}:{port} over SSH."


def open_socket(host: str, port: int, timeout: float | None = None) -> socket.socket:
    """A TCP connection to host:port through common.net.resolve_outbound: the destination is checked
    against OUTBOUND_DENY_NETWORKS before any connection, and only the addresses it returns are used."""
    try:
        addresses = resolve_outbound(host, port, purpose="fetch Git from")
    except OutboundRefused:
        raise RemoteError(unreachable(host, port)) from None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout or CONNECT_TIMEOUT)
        except OSError:
            continue
    raise RemoteError(unreachable(host, port))


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

    def __init__(self, *, host_key: paramiko.PKey, pkey: paramiko.PKey, timeout: float | None = None):
        self.host_key, self.pkey, self.timeout = host_key, pkey, timeout or CONNECT_TIMEOUT

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
        sock = open_socket(host, port, self.timeout)
        client = paramiko.SSHClient()
        client.set_log_channel(PARAMIKO_LOG_CHANNEL)
        client.get_host_keys().add(known_hosts_name(host, port), self.host_key.get_name(), self.host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            # Connected to the checked address; the host key is still looked up under the host's name.
            client.connect(
                host,
                port=port,
                sock=sock,
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
            raise RemoteError(unreachable(host, port)) from exc
        except (OSError, EOFError) as exc:
            client.close()
            raise RemoteError(unreachable(host, port)) from exc
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

    def __init__(self, *, url: str, host_key: paramiko.PKey, pkey: paramiko.PKey, timeout: float | None = None):
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

    def ref(self, ref: str) -> str | None:
        """The object a ref points to (an ls-remote: no objects transferred), or None."""
        name = ref.encode()
        result = self._call(self.client.get_refs, self.remote.path, ref_prefix=[name])
        refs = getattr(result, "refs", result)
        sha = refs.get(name)
        return (sha.decode() if isinstance(sha, bytes) else sha) if sha else None

    def head(self, branch: str) -> str:
        """The commit the branch points to."""
        sha = self.ref(f"refs/heads/{branch}")
        if not sha:
            raise RemoteError(f"The repository has no branch '{branch}'.")
        return sha

    def fetch(self, mirror: Path, refs: list[str]) -> None:
        """Fetch `refs` into the bare repository at `mirror` (created if needed; incremental)."""
        names = [r.encode() for r in refs]
        mirror.parent.mkdir(parents=True, exist_ok=True)
        repo = Repo(str(mirror)) if (mirror / "objects").exists() else Repo.init_bare(str(mirror), mkdir=True)
        try:

            def wants(remote_refs, depth=None):
                missing = [n.decode() for n in names if not remote_refs.get(n)]
                if missing:
                    raise RemoteError(f"The repository has no {', '.join(missing)}.")
                return [remote_refs[n] for n in names if remote_refs[n] not in repo.object_store]

            result = self._call(self.client.fetch, self.remote.path, repo, determine_wants=wants, ref_prefix=names)
            for name in names:
                repo.refs[name] = result.refs[name]
        finally:
            repo.close()


def peel(mirror: Path, sha: str) -> str | None:
    """The commit `sha` (a commit or an annotated tag) stands for, if the mirror has it; else None."""
    if not (mirror / "objects").exists():
        return None
    repo = Repo(str(mirror))
    try:
        obj = repo.object_store[sha.encode()] if sha.encode() in repo.object_store else None  # noqa: SIM401
        while isinstance(obj, Tag):
            obj = repo.object_store[obj.object[1]]
        return obj.id.decode() if isinstance(obj, Commit) else None
    finally:
        repo.close()


def find_commit(mirror: Path, head: str, prefix: str) -> str | None:
    """The commit of the branch history (from `head`) whose SHA starts with `prefix`, or None."""
    repo = Repo(str(mirror))
    try:
        for entry in repo.get_walker(include=[head.encode()]):
            sha = entry.commit.id.decode()
            if sha.startswith(prefix.lower()):
                return sha
        return None
    finally:
        repo.close()


class MissingDirectory(Exception):
    """The configured sub-directory is not in the commit."""


def read_tree(mirror: Path, commit_sha: str, want, subdir: str = "") -> dict[str, bytes]:
    """{path: content} of the files under `subdir` of a commit (paths relative to it) for which
    want(path) is true. Raises MissingDirectory when `subdir` is not a directory of the commit."""
    repo = Repo(str(mirror))
    try:
        store = repo.object_store
        tree_id = store[commit_sha.encode()].tree
        for part in filter(None, subdir.split("/")):
            found = [e for e in store[tree_id].items() if e.path.decode("utf-8", "replace") == part]
            if not found or found[0].mode & 0o170000 != 0o040000:
                raise MissingDirectory(subdir)
            tree_id = found[0].sha
        files: dict[str, bytes] = {}
        stack = [("", tree_id)]
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


def fetch_host_key(host: str, port: int, timeout: float | None = None) -> paramiko.PKey:
    """Connect (through the outbound check) and read the server's host key, without authenticating
    or trusting it. Every failure is the same RemoteError (see `unreachable`)."""
    timeout = timeout or CONNECT_TIMEOUT
    sock = open_socket(host, port, timeout)
    transport = paramiko.Transport(sock)
    transport.set_log_channel(PARAMIKO_LOG_CHANNEL)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise RemoteError(unreachable(host, port)) from exc
    finally:
        transport.close()
