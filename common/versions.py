"""Version comparison for app and OS versions. Pure logic, no ORM.

Versions compare part by part as numbers where they are numbers: 1.10 > 1.9, 24.04.2 > 24.04,
24.04 == 24.04.0. A letter part sorts before a missing or numeric one, so 2.0-rc1 < 2.0 < 2.0.1.
A leading "v" is ignored.
"""

import re
from functools import lru_cache, total_ordering

_TOKEN = re.compile(r"\d+|[A-Za-z]+")
# What a missing part counts as: the numeric 0 (so 24.04 == 24.04.0).
_PAD = (1, 0, "")


@total_ordering
class Version:
    __slots__ = ("text", "parts")

    def __init__(self, text: str):
        self.text = str(text)
        cleaned = self.text.strip()
        if cleaned[:1] in ("v", "V") and cleaned[1:2].isdecimal():
            cleaned = cleaned[1:]
        parts = [(1, int(tok), "") if tok.isdecimal() else (0, 0, tok.lower()) for tok in _TOKEN.findall(cleaned)]
        while parts and parts[-1] == _PAD:
            parts.pop()
        self.parts = tuple(parts)

    def _cmp(self, other: "Version") -> int:
        a, b = self.parts, other.parts
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else _PAD
            y = b[i] if i < len(b) else _PAD
            if x != y:
                return -1 if x < y else 1
        return 0

    def __eq__(self, other):
        return isinstance(other, Version) and self.parts == other.parts

    def __lt__(self, other):
        return self._cmp(other) < 0

    def __hash__(self):
        return hash(self.parts)

    def __repr__(self):
        return f"Version({self.text!r})"

    def __str__(self):
        return self.text


@lru_cache(maxsize=65536)
def parse(text: str) -> Version:
    """A cached Version: the same strings repeat across a fleet, so parsing happens once per string."""
    return Version(text)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version a is older than, equal to or newer than version b."""
    return parse(a)._cmp(parse(b))


@lru_cache(maxsize=262144)
def older(a: str, b: str) -> bool:
    """Is version a older than version b? Cached: fleets repeat the same pairs over and over."""
    return parse(a)._cmp(parse(b)) < 0


# What a version looks like: a digit first (after an optional "v"), then digits, letters and the
# separators package managers use (Debian's epoch "1:", revision "-1ubuntu2", "~rc1", "+deb12u1").
_VALID = re.compile(r"^[vV]?\d[0-9A-Za-z.+~:_-]*\Z")
MAX_VERSION_LENGTH = 64


def is_valid(text) -> bool:
    """Is `text` a version this module can order? `banana`, `""` and `1.0 beta` are not."""
    return isinstance(text, str) and len(text) <= MAX_VERSION_LENGTH and bool(_VALID.match(text))
