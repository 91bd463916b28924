"""Validators for input from outside, shared by serializers (common.api.fields), forms and YAML loaders.

Each raises django.core.exceptions.ValidationError with words a person can act on; DRF and Django
forms both turn that into a field error. The rules are the same everywhere a value can come in.
"""

import re
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError

from common import versions

# PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate: both would fail deep in
# the database driver (a 500) instead of here.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MIN_YEAR, MAX_YEAR = 2000, 9999
MAX_UTC_OFFSET = timedelta(hours=14)  # the widest offset in use (Line Islands, UTC+14)


def unstorable_reason(text: str) -> str | None:
    """Why `text` cannot be stored as text, or None when it can."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    return "NUL characters are not allowed." if match.group() == "\x00" else "Invalid Unicode (a lone surrogate)."


def validate_storable_text(value) -> None:
    if isinstance(value, str) and (reason := unstorable_reason(value)):
        raise ValidationError(reason, code="invalid_text")


def validate_datetime_range(value: datetime) -> None:
    """A timestamp a fleet can mean: years 2000–9999, also in UTC, and a UTC offset within ±14:00."""
    offset = value.utcoffset() or timedelta(0)
    if abs(offset) > MAX_UTC_OFFSET:
        raise ValidationError("The UTC offset must be between -14:00 and +14:00.", code="invalid_offset")
    naive = value.replace(tzinfo=None)
    try:
        in_range = MIN_YEAR <= naive.year <= MAX_YEAR and MIN_YEAR <= (naive - offset).year <= MAX_YEAR
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValidationError(f"The year must be between {MIN_YEAR} and {MAX_YEAR}.", code="invalid_year")


def validate_version(value: str) -> None:
    if not versions.is_valid(value):
        raise ValidationError(
            f"'{value}' is not a version: use digits and dots, like 1.24 or 2:1.8.0-1 "
            f"(at most {versions.MAX_VERSION_LENGTH} characters).",
            code="invalid_version",
        )


# git check-ref-format's rules for one branch or tag name (the part after refs/heads/).
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def git_ref_problem(name: str) -> str | None:
    """Why git would refuse `name` as a branch name (git check-ref-format --branch), or None."""
    if not name:
        return "A branch name cannot be empty."
    if len(name) > 255:
        return "A branch name can have at most 255 characters."
    if _REF_FORBIDDEN.search(name):
        return "A branch name cannot contain spaces, control characters or any of ~ ^ : ? * [ \\."
    if name.startswith("-"):
        return "A branch name cannot start with '-'."
    if ".." in name or "@{" in name or name == "@" or "//" in name:
        return "A branch name cannot contain '..', '@{' or '//', or be '@'."
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return "A branch name cannot start or end with '/', or end with '.'."
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "No part of a branch name can start with '.' or end with '.lock'."
    return None


def validate_git_ref(value: str) -> None:
    if problem := git_ref_problem(value):
        raise ValidationError(f"'{value}' is not a valid branch name. {problem}", code="invalid_ref")


def parse_id(text) -> int | None:
    """A primary key from a query string or form value, or None: ASCII digits only, within a 64-bit
    signed integer. `str.isdigit()` lets "²" through (int() then raises) and an unbounded int reaches the
    database as an overflow; both would be 500s where the user sent a bad id."""
    text = str(text or "").strip()
    if not (text.isascii() and text.isdecimal()) or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value < 2**63 else None
