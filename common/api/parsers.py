"""JSON in: refused at the door when it could only break something further in.

Every JSON body the API accepts (users and agents alike) goes through `parse_json`:
- nesting deeper than `MAX_DEPTH` (a 10,000-deep array would exhaust the parser's recursion);
- numbers that are not finite (`1e400` parses to inf, `NaN`/`Infinity` are not JSON);
- strings or keys with NUL or a lone surrogate (PostgreSQL and UTF-8 cannot store them).
Each refusal is a 400 naming the path of the offending value, in the one error envelope.
"""

import json
import math
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from common.exceptions import join_path
from common.validators import unstorable_reason

MAX_DEPTH = 32
# A NUL or a surrogate can only enter a JSON text as a \\u escape (raw ones are invalid JSON / UTF-8):
# a body without one needs no walk over its strings.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class HostileJSON(ParseError):
    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path or "non_field_errors"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is out of range")
    return value


def _no_constants(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes | str):
    """The decoded value of a JSON text, or HostileJSON saying why it is refused."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constants)
    except RecursionError:
        raise HostileJSON(f"JSON nested deeper than {MAX_DEPTH} levels is not accepted.") from None
    except UnicodeDecodeError:
        raise HostileJSON("The body is not UTF-8.") from None
    except ValueError as exc:
        raise HostileJSON(f"JSON parse error - {exc}") from None
    _check(value, text)
    return value


def too_deep(value) -> bool:
    """Does the decoded value nest containers deeper than MAX_DEPTH? Level by level, containers only:
    about 0.7 ms for a 3,000-app heartbeat (a walk that also visits every string takes 7 ms)."""
    if type(value) is not dict and type(value) is not list:
        return False
    level = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return False
    return True


def _check(value, text: str) -> None:
    """Refuse a container deeper than MAX_DEPTH and, when the text had a suspect escape, a bad string or
    key. The common case builds no paths; a refusal walks the value to name the offending path."""
    strings = bool(_SUSPECT_ESCAPE.search(text))
    if strings or too_deep(value):
        _raise_with_path(value, strings)


def _raise_with_path(value, strings: bool) -> None:
    stack = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_DEPTH:
            raise HostileJSON(f"JSON nested deeper than {MAX_DEPTH} levels is not accepted.", path)
        if isinstance(item, dict):
            for key, child in item.items():
                if strings and (reason := unstorable_reason(key)):
                    raise HostileJSON(f"A key is not valid: {reason}", path)
                stack.append((child, join_path(path, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, join_path(path, index), depth + 1) for index, child in enumerate(item))
        elif strings and isinstance(item, str) and (reason := unstorable_reason(item)):
            raise HostileJSON(reason, path)


class StrictJSONParser(parsers.JSONParser):
    """DRF's JSON parser with `parse_json`'s refusals."""

    def parse(self, stream, media_type=None, parser_context=None):
        return parse_json(stream.read() if stream is not None else b"")
