"""Running the system's own tools: argument lists only (never a shell), a timeout, the C locale.

`Host` is everything the sources and actions know about the machine: where its files are (a scratch
root in the tests), which apt configuration to use, and a `Runner` for the tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config

# sshd and sysctl live in sbin, which is not on every user's PATH.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"]
)
OUTPUT_TAIL = 4000


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int | None  # None: the tool was missing or timed out (see `error`)
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def command_line(self) -> str:
        return " ".join(_quote(a) for a in self.argv)

    def why(self) -> str:
        """One line on what went wrong, for a failure reason."""
        if self.error:
            return self.error
        last = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return f"exit status {self.returncode}" + (f": {last[-1][:300]}" if last else "")

    def transcript(self, tail: int = OUTPUT_TAIL) -> str:
        """`$ command`, the end of its output, and how it ended: what a command report shows."""
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).rstrip()
        if len(text) > tail:
            text = "…" + text[-tail:]
        end = self.error or f"exit status {self.returncode}"
        return f"$ {self.command_line}\n" + (text + "\n" if text else "") + f"[{end}]"


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./=:@+,%^" for c in arg) else repr(arg)


def which(tool: str) -> str | None:
    return shutil.which(tool, path=_SEARCH_PATH)


class Runner:
    """Runs tools with `subprocess.run` on argument lists, in the C.UTF-8 locale, each with a timeout."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = dict(env or {})

    def run(
        self, argv: list[str], *, timeout: float = 60, env: dict[str, str] | None = None, stdin: str = ""
    ) -> Result:
        argv = [str(a) for a in argv]
        exe = which(argv[0]) if "/" not in argv[0] else argv[0]
        if exe is None or not os.access(exe, os.X_OK):
            return Result(tuple(argv), None, error=f"{argv[0]}: not found on this machine")
        full_env = {
            **os.environ,
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
            "PATH": _SEARCH_PATH,
            **self.env,
            **(env or {}),
        }
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [exe, *argv[1:]],
                input=stdin,
                capture_output=True,
                text=True,
                errors="replace",
                env=full_env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return Result(tuple(argv), None, out, "", f"timed out after {timeout:g} s", time.monotonic() - started)
        except OSError as exc:
            return Result(tuple(argv), None, error=f"{argv[0]}: {exc.strerror or exc}")
        return Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr, "", time.monotonic() - started)


@dataclass
class Host:
    """The machine the agent governs: its configuration, a runner, and facts checked once."""

    config: Config
    runner: Runner = field(default_factory=Runner)

    @classmethod
    def from_config(cls, config: Config) -> Host:
        env = {"APT_CONFIG": config.apt_config} if config.apt_config else {}
        return cls(config, Runner(env))

    def path(self, relative: str) -> Path:
        return Path(self.config.path(relative))

    def read(self, relative: str) -> str | None:
        try:
            return self.path(relative).read_text(errors="replace")
        except OSError:
            return None

    def read_abs(self, path: str | Path) -> str | None:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return None

    def has(self, tool: str) -> bool:
        return which(tool) is not None

    def run(self, argv: list[str], **kwargs) -> Result:
        return self.runner.run(argv, **kwargs)

    @property
    def systemd_running(self) -> bool:
        """systemd's own test (sd_booted): it is the service manager only when /run/systemd/system exists.
        In containers and CI it usually is not, and `systemctl` cannot answer."""
        return os.path.isdir("/run/systemd/system")

    def pid1(self) -> str:
        try:
            return Path("/proc/1/comm").read_text().strip()
        except OSError:
            return "unknown"

    def dpkg_query(self) -> list[str]:
        return ["dpkg-query", f"--admindir={self.config.dpkg_admindir}"]


def atomic_write(path: str | Path, text: str, *, mode: int = 0o644) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of either."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # O_CREAT's mode is filtered by the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
