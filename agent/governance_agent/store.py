"""What the agent remembers between runs: its state file and its credential file.

The state file (`<state_dir>/state.json`, written atomically) holds
- `first_seen`: when each available update was first seen, reported as its `released_at`, so the
  panel's "within 48 hours of release" rules count from a fixed moment across restarts;
- `runs`: the command journal. A run is written down before it starts and its result before it is
  reported, so a run delivered twice, or found again after a crash, never runs twice, and a result
  whose report was lost is sent again;
- `sources`: the last good value of every state source, sent while a source fails and kept across
  restarts, with the last full report and when the panel last answered;
- `sysctl_original`: a kernel parameter's value before the panel first set it, restored on unset.

The credential file holds the agent's panel credential; it is created mode 0600 and refused if
anyone but its owner can read it.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from .system import atomic_write

MAX_RUNS = 1000
RUN_RETENTION_SECONDS = 30 * 86400


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class State:
    def __init__(self, path: str | Path, *, read_only: bool = False):
        """`read_only`: look, never write (`state --print`, `status`)."""
        self.path, self.read_only = Path(path), read_only
        self.data = self._load()
        self._saved = ""
        # The main loop (heartbeats) and the command worker share the state: one at a time.
        self.lock = threading.RLock()

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            if self.read_only:
                return self._empty({})
            # Unreadable: start afresh, keeping the old file for a person to look at.
            broken = self.path.with_suffix(f".broken-{int(time.time())}")
            self.path.replace(broken)
            print(f"governance-agent: {self.path} was unreadable ({exc}); moved to {broken}")
            data = {}
        return self._empty(data)

    @staticmethod
    def _empty(data: dict) -> dict:
        for key in ("first_seen", "runs", "sources", "sysctl_original", "panel"):
            data.setdefault(key, {})
        return data

    def save(self) -> None:
        """Write the file if anything changed since the last write."""
        if self.read_only:
            return
        with self.lock:
            text = json.dumps(self.data, indent=1, sort_keys=True)
            if text != self._saved:
                atomic_write(self.path, text, mode=0o600)
                self._saved = text

    # --- released_at of updates ----------------------------------------------------------------

    def released_at(self, updates: list[tuple[str, str, str]]) -> list[dict]:
        """The updates with the time each was first seen; forgets updates no longer offered."""
        with self.lock:
            seen, now = self.data["first_seen"], now_iso()
            current = {}
            for kind, name, version in updates:
                key = f"{kind}\t{name}\t{version}"
                current[key] = seen.get(key) or now
            self.data["first_seen"] = current
            return [
                {"kind": kind, "name": name, "version": version, "released_at": current[f"{kind}\t{name}\t{version}"]}
                for kind, name, version in updates
            ]

    # --- the command journal -----------------------------------------------------------------

    def run(self, run_id: int) -> dict | None:
        return self.data["runs"].get(str(run_id))

    def run_started(self, run_id: int, kind: str, params: dict) -> None:
        with self.lock:
            self.data["runs"][str(run_id)] = {"kind": kind, "params": params, "started_at": now_iso(), "t": time.time()}
            self._prune_runs()
            self.save()  # before the command starts: a crash from here on cannot lead to a second run

    def run_finished(self, run_id: int, result: dict) -> None:
        with self.lock:
            entry = self.data["runs"].setdefault(str(run_id), {"t": time.time()})
            entry.update(result=result, finished_at=now_iso(), reported=False)
            self.save()

    def run_reported(self, run_id: int) -> None:
        with self.lock:
            entry = self.data["runs"].get(str(run_id))
            if entry is not None:
                entry["reported"] = True
                self.save()

    def unreported(self) -> list[tuple[int, dict]]:
        """Finished runs whose result the panel has not acknowledged, oldest first."""
        with self.lock:
            items = [(int(k), v) for k, v in self.data["runs"].items() if "result" in v and not v.get("reported")]
            return sorted(items, key=lambda item: item[1].get("t", 0))

    def _prune_runs(self) -> None:
        runs = self.data["runs"]
        cutoff = time.time() - RUN_RETENTION_SECONDS
        keep = sorted(runs.items(), key=lambda kv: kv[1].get("t", 0))[-MAX_RUNS:]
        self.data["runs"] = {k: v for k, v in keep if v.get("t", 0) >= cutoff or not v.get("reported", True)}

    # --- cached state ------------------------------------------------------------------------

    def source(self, name: str, default=None):
        return self.data["sources"].get(name, default)

    def remember_source(self, name: str, value) -> None:
        with self.lock:
            self.data["sources"][name] = value

    def panel_event(self, *, ok: bool, error: str = "") -> None:
        with self.lock:
            panel = self.data["panel"]
            if ok:
                panel.update(last_ok_at=now_iso(), error="", error_since="")
            else:
                if not panel.get("error_since"):
                    panel["error_since"] = now_iso()
                panel["error"] = error[:500]


# --- credential file --------------------------------------------------------------------------


class CredentialError(Exception):
    pass


def load_credential(path: str | Path) -> dict | None:
    """The saved registration ({credential, instance_id, name, panel_url}), None when there is none.

    Refused when group or others can read it: the credential lets anyone act as this server."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(
            f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): run `chmod 600 {path}`"
        )
    if os.geteuid() == 0 and info.st_uid != 0:
        raise CredentialError(f"{path} is not owned by root: run `chown root:root {path}`")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CredentialError(f"{path} is not readable: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("credential"), str):
        raise CredentialError(f"{path} holds no credential: register again (governance-agent register --force)")
    return data


def save_credential(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)
