"""YAML files a person writes (GitOps configuration, policy files): every problem named by file and line.

Pure logic. A file is composed into nodes first (`compose`), so each value keeps the line it was
written on; `line_of` finds the line of a value from its path (`rules.apps[1].min_version`), which is
how a validator that knows nothing about YAML (governance.rules) still gets its errors placed.

Plain data only, checked before anything is built (`compose`): no anchors or aliases (a "billion laughs"
expands nine aliases nine times over), no tags beyond the plain ones (`!!python/...` and `!custom`
have no meaning here), nesting at most `MAX_DEPTH` levels, every scalar constructible (`2026-02-30`
looks like a date and is not one) and with `storable`, storable (no NUL). Each refusal is an Issue on its line.
"""

import re
from dataclasses import dataclass

import yaml

from common.validators import unstorable_reason

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STR_TAG = "tag:yaml.org,2002:str"
MAX_DEPTH = 32
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")} | {"!"}


@dataclass(frozen=True)
class Issue:
    path: str
    line: int
    message: str

    def __str__(self):
        return f"{self.path}, line {self.line}: {self.message}"

    def as_dict(self) -> dict:
        return {"file": self.path, "line": self.line, "message": self.message}


class FilesInvalid(Exception):
    """A set of files that cannot be applied; `issues` lists every problem found."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        shown = "; ".join(str(i) for i in issues[:10])
        more = f" (and {len(issues) - 10} more)" if len(issues) > 10 else ""
        super().__init__(f"Invalid files: {shown}{more}")


def line(node) -> int:
    return node.start_mark.line + 1


def construct(node):
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def compose(path: str, text: bytes | str, *, storable: bool = False) -> tuple[yaml.Node | None, list[Issue]]:
    """The node tree of one file, or why it is refused (syntax, or not plain data) as an Issue on its line.
    `storable`: also refuse a string with NUL (for callers that do not check their strings themselves)."""
    try:
        if issue := _not_plain(path, text):
            return None, [issue]
        root = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else 1
        reason = " ".join(filter(None, [exc.context, exc.problem])) or "YAML syntax error"
        return None, [Issue(path, at, f"YAML syntax error: {reason}")]
    except yaml.YAMLError as exc:
        return None, [Issue(path, 1, f"YAML error: {exc}")]
    issue = _unreadable_value(path, root, storable)
    return (None, [issue]) if issue else (root, [])


def _not_plain(path: str, text: bytes | str) -> Issue | None:
    """The first anchor, alias, unknown tag or over-deep nesting, from the event stream (nothing built)."""
    depth = 0
    for event in yaml.parse(text, Loader=Loader):
        at = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return Issue(path, at, "anchors and aliases (&name, *name) are not accepted: write each value out")
        tag = getattr(event, "tag", None)
        if tag and tag not in PLAIN_TAGS:
            return Issue(
                path, at, f"the tag {tag.replace('tag:yaml.org,2002:', '!!')} is not accepted: plain data only"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return Issue(path, at, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _unreadable_value(path: str, root, storable: bool) -> Issue | None:
    """The first scalar that cannot be built or stored (a date that does not exist, a NUL), or a key that
    is a list or mapping. Aliases are refused already, so this visits each node once."""
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    return Issue(path, line(key_node), "a key must be a plain name, not a list or mapping")
                stack += [key_node, value_node]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
        else:
            try:
                value = construct(node)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                return Issue(path, line(node), f"'{node.value[:40]}' cannot be read: {exc}")
            if storable and isinstance(value, str) and (reason := unstorable_reason(value)):
                return Issue(path, line(node), reason)
    return None


def pairs(path: str, node, what: str, issues: list[Issue]) -> list[tuple[yaml.Node, yaml.Node]]:
    """Key/value node pairs of a mapping node, reporting duplicate and non-string keys."""
    if not isinstance(node, yaml.MappingNode):
        issues.append(Issue(path, line(node), f"'{what}' must be a mapping of key: value"))
        return []
    seen, result = set(), []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
            issues.append(Issue(path, line(key_node), f"keys under '{what}' must be plain names"))
            continue
        if key_node.value in seen:
            issues.append(Issue(path, line(key_node), f"'{key_node.value}' appears twice under '{what}'"))
            continue
        seen.add(key_node.value)
        result.append((key_node, value_node))
    return result


_INDEX = re.compile(r"^\[(\d+)\]\.?")


def line_of(node, path: str) -> int:
    """The line of the value at `path` (`apps[1].min_version`, `settings.ssh.password_auth`) below
    `node`; the line of the deepest part that exists when the rest does not (a missing key: its parent).
    Mapping keys may contain dots, so the longest key that prefixes the rest of the path wins."""
    at = line(node)
    rest = path
    while rest:
        if isinstance(node, yaml.SequenceNode) and (m := _INDEX.match(rest)):
            index = int(m[1])
            if index >= len(node.value):
                return at
            node, rest = node.value[index], rest[m.end() :]
        elif isinstance(node, yaml.MappingNode):
            best = None
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if (rest == key or rest.startswith((key + ".", key + "["))) and (
                    best is None or len(key) > len(best[0])
                ):
                    best = (key, key_node, value_node)
            if best is None:
                return at
            key, key_node, node = best
            rest = rest[len(key) :].lstrip(".")
            # A missing/odd value is best shown on its key's line.
            at = line(key_node)
            if not rest:
                return line(node) if node.start_mark.line == key_node.start_mark.line else at
            continue
        else:
            return at
        at = line(node)
    return at
