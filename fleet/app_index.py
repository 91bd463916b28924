"""The installed apps as compact text, so that governance reads only the apps its policies name.

What it buys (bench/evaluation.py, BENCH_APPS=3000): a real server reports 1,000–3,000 packages. Read as
the `apps` JSON, every evaluation of such a server paid PostgreSQL's jsonb-to-text output (about 2.4 ms),
json.loads (about 3 ms) and a shape check of every package, for the handful of apps 50 policies name.
`Instance.apps_text` holds the same apps as one line each, `"\\n<name>\\t<version>\\t<1|0>\\n…"`, sorted by
name: text is sent as it is stored, and `AppIndex.select` finds a named app by binary search over the lines.

Who writes it: `apps_text(apps)` of validated apps only (fleet.state.validate_heartbeat: names and
versions hold no tab, newline or other control character), in the same UPDATE as `apps`
(services.heartbeats). A database trigger (migration 0006) sets it to NULL whenever anything else
rewrites `apps` (a raw UPDATE, a script): a NULL index means "evaluate the `apps` JSON as before", so a
state stored behind validation's back is still checked in full and can still be state_invalid. The
trigger also forgets the heartbeat digests (migration 0007), so the agent's next heartbeat puts back
what it reports, with its index.
"""

import re
from dataclasses import dataclass


def apps_text(apps: list[dict]) -> str | None:
    """The index of validated apps ({name, version, running}), one line each, sorted by name; None
    (no index: the apps JSON is read) should a name or version hold a tab or a newline, which the
    lines could not (common.versions' `$` lets a version end in a newline)."""
    lines = [f"{a['name']}\t{a['version']}\t{'1' if a['running'] else '0'}\n" for a in sorted(apps, key=_name)]
    text = "\n" + "".join(lines)
    return text if text.count("\n") == len(lines) + 1 and text.count("\t") == 2 * len(lines) else None


# What every name a glob matches starts with (fnmatchcase: anything before the first *, ? or [ is literal).
_GLOB_PREFIX = re.compile(r"[^*?\[]*")


def _name(app: dict) -> str:
    return app["name"]


class IndexDamaged(ValueError):
    """The stored index is not one apps_text wrote."""


@dataclass(frozen=True)
class AppIndex:
    """One instance's stored index. Stands in for its apps list until `select` narrows it."""

    text: str

    def select(self, names, globs=()) -> list[dict]:
        """The apps named in `names` and a superset of those the glob patterns `globs` match, as
        {name, version, running}: a superset of what the caller looks at (it matches the globs itself).

        The lines are in name order, and a tab sorts before any character a name may hold, so
        "nginx\t…" < "nginx-common\t…" as "nginx" < "nginx-common": a binary search over the text's
        offsets per name and per glob prefix (see _window). What it buys (bench/evaluation.py,
        BENCH_APPS=3000): splitting 3,000 lines into a list to bisect it cost twice the search, and a
        str.find per name over the whole text more than the rest of the evaluation."""
        text = self.text
        if not (text.startswith("\n") and text.endswith("\n")):
            raise IndexDamaged("the apps index does not start and end with a newline")
        found, lo = {}, -1
        for key in sorted(f"\n{name}\t" for name in names):  # in the lines' order: one search narrows the next
            lo, hi = _window(text, key, lo)
            i = text.find(key, lo + 1, hi + len(key))
            if i >= 0:
                found[key[1:-1]] = text[i + 1 : text.find("\n", i + 1)]
        for glob in globs:
            for line in self._candidates(glob):
                found.setdefault(line.partition("\t")[0], line)
        return [_app(line) for line in found.values()]

    def _candidates(self, glob: str):
        """Lines whose name may match `glob` (fnmatchcase): those starting with its literal prefix; for
        a glob that starts with a wildcard, those whose name holds its longest literal part before any
        bracket (`*-dev` → "-dev": a str.find over the text); every line when it has none (`*`, `[a-z]*`)."""
        text = self.text
        prefix = _GLOB_PREFIX.match(glob).group()
        if prefix:
            key = f"\n{prefix}"
            lo, hi = _window(text, key, -1)
            i = text.find(key, lo + 1, hi + len(key))
            while i >= 0:  # the lines starting with the prefix follow one another
                end = text.find("\n", i + 1)
                yield text[i + 1 : end]
                i = end if text.startswith(key, end) else -1
            return
        literal = max(re.split(r"[*?]", glob.partition("[")[0]), key=len)
        if not literal:
            yield from text[1:-1].split("\n") if len(text) > 1 else ()  # select checked both ends
            return
        i = 0
        while (i := text.find(literal, i)) >= 0:
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            line = text[start:end]
            if i + len(literal) <= start + line.find("\t"):  # within the name
                yield line
            i = end + 1


# Below this many characters a window is searched with str.find rather than halved again.
WINDOW = 1000


def _window(text: str, key: str, lo: int) -> tuple[int, int]:
    """(lo, hi): offsets of newlines (or -1) such that the first line ≥ `key` ("\\n" + what it starts
    with) begins at the newline after `lo` and at or before `hi`; `lo` is one whose line is known to
    be below the key (-1: none). Halving by the middle newline, comparing the line's start with the
    key: within a line, as a line can hold the key's one tab only at the name's end."""
    hi = len(text) - 1
    while hi - lo > WINDOW:
        mid = text.rfind("\n", lo + 1, (lo + hi) // 2 + 1)
        if mid < 0:
            mid = text.find("\n", (lo + hi) // 2, hi)
            if mid < 0:
                break
        if text[mid : mid + len(key)] < key:
            lo = mid
        else:
            hi = mid
    return lo, hi


def _app(line: str) -> dict:
    parts = line.split("\t")
    if len(parts) != 3 or parts[2] not in ("0", "1") or not parts[0]:
        raise IndexDamaged(f"the apps index has a line that is not name, version and 1 or 0: {line[:80]!r}")
    return {"name": parts[0], "version": parts[1], "running": parts[2] == "1"}
