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
from bisect import bisect_left
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
        "nginx\t…" < "nginx-common\t…" as "nginx" < "nginx-common": one split, then a binary search
        per name and per glob prefix (a str.find per name cost more than the rest of the evaluation)."""
        text = self.text
        if not text.startswith("\n"):
            raise IndexDamaged("the apps index does not start with a newline")
        lines = text[1:].split("\n")
        if lines[-1] == "":
            lines.pop()
        found, end = {}, len(lines)
        for name in names:
            key = f"{name}\t"
            i = bisect_left(lines, key)
            if i < end and lines[i].startswith(key):
                found[name] = lines[i]
        for glob in globs:
            for line in self._candidates(lines, glob):
                found.setdefault(line.partition("\t")[0], line)
        return [_app(line) for line in found.values()]

    def _candidates(self, lines: list[str], glob: str):
        """Lines whose name may match `glob` (fnmatchcase): those starting with its literal prefix; for
        a glob that starts with a wildcard, those whose name holds its longest literal part before any
        bracket (`*-dev` → "-dev": a str.find over the text); every line when it has none (`*`, `[a-z]*`)."""
        prefix = _GLOB_PREFIX.match(glob).group()
        if prefix:
            i = bisect_left(lines, prefix)
            while i < len(lines) and lines[i].startswith(prefix):
                yield lines[i]
                i += 1
            return
        literal = max(re.split(r"[*?]", glob.partition("[")[0]), key=len)
        if not literal:
            yield from lines
            return
        text, i = self.text, 0
        while (i := text.find(literal, i)) >= 0:
            start = text.rfind("\n", 0, i) + 1
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            line = text[start:end]
            if i + len(literal) <= start + line.find("\t"):  # within the name
                yield line
            i = end + 1


def _app(line: str) -> dict:
    parts = line.split("\t")
    if len(parts) != 3 or parts[2] not in ("0", "1") or not parts[0]:
        raise IndexDamaged(f"the apps index has a line that is not name, version and 1 or 0: {line[:80]!r}")
    return {"name": parts[0], "version": parts[1], "running": parts[2] == "1"}
