"""The embedded Celery broker: kombu's filesystem transport, corrected (`atomicfs://`).

kombu's `filesystem://` writes a message in place under a lock that its reader never takes, so a
worker can read a half-written file and die of a JSONDecodeError; and it deletes a message when it
hands it to the worker, so a worker killed mid-task loses it even with `acks_late`. This transport
keeps kombu's file layout and naming (`<time>_<uuid>.<queue>.msg`) and buys:

1. **Atomic publish**: a message is written to `tmp/`, fsynced, then `os.rename`d into `queue/`.
   A reader sees a whole file or none.
2. **Atomic claim**: a consumer takes a message by renaming it into its own `processing/<consumer>/`
   folder. The rename serialises competing consumers: exactly one of them gets each message.
3. **Ack deletes, requeue puts back**: the claimed file is removed on ack (or a reject); a reject with
   requeue, or a graceful shutdown with unacked messages, first puts a copy back into `queue/`.
4. **Recovery of dead consumers**: each consumer holds an exclusive `flock` on
   `processing/<consumer>/.lock` for its lifetime; the kernel drops it when the process dies however
   it dies. Any consumer that can take that lock (checked on start and every `recover_interval`
   seconds) moves the dead consumer's messages back into `queue/`. Delivery is at least once: a task
   that was running when its worker was killed runs again.
5. **Tolerant reads**: a file that still does not parse (written by something else, a full disk) is
   moved to `quarantine/` with a logged warning instead of crashing the worker.

Options (`broker_transport_options`): `data_folder` (root; sub-folders are made on demand),
`fsync` (default True), `recover_interval` (seconds, default 10), `polling_interval`.
"""

import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

logger = logging.getLogger(__name__)

ALIAS = "atomicfs"
LOCK_NAME = ".lock"


class _Claims:
    """This process's `processing/<host>-<pid>-<random>/` folder, locked for as long as the process lives.

    The folder is made complete (lock file created and locked) under `tmp/` and renamed into place, so a
    recoverer can never see it unlocked. One per process: re-made after a fork, whose child does not
    own the parent's lock.
    """

    _by_key: dict[tuple[int, Path], "_Claims"] = {}

    def __init__(self, root: Path):
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging = root / "tmp" / name
        staging.mkdir(parents=True)
        self._lock_fd = os.open(staging / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (root / "processing").mkdir(exist_ok=True)
        self.path = root / "processing" / name
        os.rename(staging, self.path)

    @classmethod
    def for_process(cls, root: Path) -> "_Claims":
        key = (os.getpid(), root)
        if key not in cls._by_key:
            cls._by_key[key] = cls(root)
        return cls._by_key[key]


class Channel(filesystem.Channel):
    """See the module docstring. Claimed files are tracked by delivery tag (`_claimed`); acks may come
    from the worker's pool threads, which only pop from that dict (atomic under the GIL)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claimed: dict[str, Path] = {}
        self._next_recovery = 0.0

    # --- folders ----------------------------------------------------------------------------
    @cached_property
    def root(self) -> Path:
        root = Path(self.transport_options.get("data_folder", "var/celery"))
        for sub in ("queue", "tmp", "control", "quarantine"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return root

    @cached_property
    def data_folder_in(self):
        return str(self.root / "queue")

    @cached_property
    def data_folder_out(self):
        return self.data_folder_in

    @cached_property
    def control_folder(self):
        return self.root / "control"

    @cached_property
    def fsync(self) -> bool:
        return bool(self.transport_options.get("fsync", True))

    # --- publish ----------------------------------------------------------------------------
    def _put(self, queue, payload, **kwargs):
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        self._write_atomically(Path(self.data_folder_out) / name, str_to_bytes(dumps(payload)))

    def _write_atomically(self, target: Path, data: bytes) -> None:
        staging = self.root / "tmp" / f"{target.name}.part"
        fd = os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(staging, target)

    # --- consume ----------------------------------------------------------------------------
    def _get(self, queue):
        self._recover_if_due()
        claims = _Claims.for_process(self.root).path
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != suffix[1:]:
                continue
            claimed = claims / name
            try:
                os.rename(Path(self.data_folder_in) / name, claimed)
            except FileNotFoundError:
                continue  # another consumer won this one
            payload = self._read(claimed)
            if payload is None:
                continue
            tag = payload.get("properties", {}).get("delivery_tag")
            if tag:
                self._claimed[tag] = claimed
            else:  # nothing can ack it: treat as delivered
                claimed.unlink(missing_ok=True)
            return payload
        raise Empty()

    def _read(self, path: Path):
        try:
            return loads(bytes_to_str(path.read_bytes()))
        except (ValueError, UnicodeDecodeError) as exc:
            target = self.root / "quarantine" / path.name
            logger.warning("Unreadable broker message %s moved to %s: %s", path.name, target, exc)
            with contextlib.suppress(OSError):
                os.rename(path, target)
            return None

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple)
        self._drop_claim(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):
        # With requeue, the parent restores a copy through _restore; without, the message is discarded.
        super().basic_reject(delivery_tag, requeue)
        self._drop_claim(delivery_tag)

    def _drop_claim(self, delivery_tag) -> None:
        claimed = self._claimed.pop(delivery_tag, None)
        if claimed is not None:
            claimed.unlink(missing_ok=True)

    def _restore(self, message):
        """Requeue (reject with requeue, unacked at shutdown): a fresh copy marked redelivered, then the
        claim is dropped. A crash in between duplicates the message; it never loses it."""
        super()._restore(message)
        self._drop_claim(message.delivery_tag)

    # --- recovery ---------------------------------------------------------------------------
    def _recover_if_due(self):
        now = time.monotonic()
        if now >= self._next_recovery:
            self._next_recovery = now + float(self.transport_options.get("recover_interval", 10))
            recover_dead_consumers(self.root)


def recover_dead_consumers(root: Path) -> int:
    """Move the claims of every consumer whose lock is free (its process is gone) back into `queue/`.

    Holding the dead consumer's lock while moving serialises two recoverers; each file is moved by a
    rename, so a message lands in `queue/` once. Returns the number of messages put back.
    """
    processing, queue, moved = root / "processing", root / "queue", 0
    if not processing.is_dir():
        return 0
    for folder in processing.iterdir():
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR)
        except (FileNotFoundError, NotADirectoryError):
            continue  # being removed by another recoverer
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # alive
        try:
            for path in folder.glob("*.msg"):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, queue / path.name)
                    moved += 1
            with contextlib.suppress(OSError):
                (folder / LOCK_NAME).unlink()
                folder.rmdir()
        finally:
            os.close(fd)
    if moved:
        logger.warning("Requeued %d message(s) claimed by consumers that are gone", moved)
    _sweep_staging(root / "tmp")
    return moved


def _sweep_staging(tmp: Path, older_than: float = 3600) -> None:
    """Drop what a process killed mid-publish (or mid-start) left in `tmp/`: its publish never returned,
    so no message is lost; an hour is far longer than any write takes."""
    cutoff = time.time() - older_than
    for entry in tmp.iterdir():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    for child in entry.iterdir():
                        child.unlink()
                    entry.rmdir()
                else:
                    entry.unlink()


def check_writable(folder) -> None:
    """For /healthz: raises OSError unless a message could be published into `folder` now."""
    tmp = Path(folder) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    probe = tmp / f"healthz-{os.getpid()}-{uuid.uuid4().hex}.part"
    probe.write_bytes(b"{}")
    probe.unlink()


class Transport(filesystem.Transport):
    Channel = Channel
    global_state = filesystem.virtual.BrokerState()
    driver_type = driver_name = ALIAS

    @property
    def default_connection_params(self):
        # No host: kombu would log "No hostname was supplied. Reverting to default 'localhost'" otherwise.
        return {"port": self.default_port, "hostname": None}


def register() -> None:
    """Make `atomicfs://` a broker URL kombu understands (called by config/celery.py in every process)."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
