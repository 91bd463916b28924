"""YAML files a person writes (GitOps configuration, policy files): every problem named by file and line.

Pure logic. A file is composed into nodes first (`compose`), so each value keeps the line it was
written on; `line_of` finds the line of a value from its path (`rules.apps[1].min_version`), which is
how a validator that knows nothing about YAML (governance.rules) still gets its errors placed.
"""

import re
from dataclasses import dataclass

import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STR_TAG = "tag:yaml.org,2002:str"


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


def compose(path: str, text: bytes | str) -> tuple[yaml.Node | None, list[Issue]]:
    """The node tree of one file, or the syntax error as an Issue on its line."""
    try:
        return yaml.compose(text, Loader=Loader), []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark else 1
        reason = " ".join(filter(None, [exc.context, exc.problem])) or "YAML syntax error"
        return None, [Issue(path, at, f"YAML syntax error: {reason}")]
    except yaml.YAMLError as exc:
        return None, [Issue(path, 1, f"YAML error: {exc}")]


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
