"""The installed apps as compact text, so that governance reads only the apps its policies name.

What it buys (bench/evaluation.py, BENCH_APPS=3000): a real server reports 1,000–3,000 packages. Read as
the `apps` JSON, every evaluation of such a server paid PostgreSQL's jsonb-to-text output (about 2.4 ms),
json.loads (about 3 ms) and a shape check of every package, for the handful of apps 50 policies name.
`Instance.apps_text` holds the same apps as one line each, `"\\n<name>\\t<version>\\t<1|0>\\n…"`, sorted by
name: text is sent as it is stored, and `AppIndex.select` finds a named app with one `str.find`.

Who writes it: `apps_text(apps)` of validated apps only (fleet.state.validate_heartbeat: names and
versions hold no tab, newline or other control character), in the same UPDATE as `apps`
(services.heartbeats). A database trigger (migration 0006) sets it to NULL whenever anything else
rewrites `apps` (a raw UPDATE, a script): a NULL index means "evaluate the `apps` JSON as before", so a
state stored behind validation's back is still checked in full and can still be state_invalid.
"""

from dataclasses import dataclass


def apps_text(apps: list[dict]) -> str:
    """The index of validated, name-sorted apps ({name, version, running})."""
    lines = [f"{a['name']}\t{a['version']}\t{'1' if a['running'] else '0'}\n" for a in apps]
    return "\n" + "".join(lines)


class IndexDamaged(ValueError):
    """The stored index is not one apps_text wrote."""


@dataclass(frozen=True)
class AppIndex:
    """One instance's stored index. Stands in for its apps list until `select` narrows it."""

    text: str

    def select(self, names, prefixes=(), *, every: bool = False) -> list[dict]:
        """The apps named in `names` and those whose name starts with one of `prefixes` (every app
        when `every`): a superset of what the caller looks at, as {name, version, running}."""
        text = self.text
        if not text.startswith("\n"):
            raise IndexDamaged("the apps index does not start with a newline")
        if every:
            return [_app(line) for line in text[1:].split("\n") if line]
        found = {}
        for name in names:
            start = text.find(f"\n{name}\t")
            if start >= 0:
                found[name] = _line(text, start)
        for prefix in prefixes:
            needle, start = f"\n{prefix}", 0
            while (start := text.find(needle, start)) >= 0:
                line = _line(text, start)
                found.setdefault(line.partition("\t")[0], line)
                start += len(line) + 1
        return [_app(line) for line in found.values()]


def _line(text: str, start: int) -> str:
    end = text.find("\n", start + 1)
    return text[start + 1 : end if end >= 0 else len(text)]


def _app(line: str) -> dict:
    parts = line.split("\t")
    if len(parts) != 3 or parts[2] not in ("0", "1") or not parts[0]:
        raise IndexDamaged(f"the apps index has a line that is not name, version and 1 or 0: {line[:80]!r}")
    return {"name": parts[0], "version": parts[1], "running": parts[2] == "1"}
