"""The repository layout and its validation. Pure logic: no ORM, no network.

    fleet.yaml                      every instance
    groups/<group>.yaml             instances in that group
    tags/<key>=<value>.yaml         instances carrying that tag
    instances/<instance>.yaml       one instance

Each file is a mapping with optional `settings:` (key → string/number/boolean, or null to unset)
and `apps:` (app name → quoted version, or `absent`). The whole commit is validated before
anything is applied; every problem names the file, the line and the reason.
"""

import re
from dataclasses import dataclass

import yaml

from fleet.commands import NAME_RE, SETTING_KEY_RE, VERSION_RE
from fleet.scopes import ScopeError, parse_tag

from .choices import Level

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
APP_PREFIX = "app:"
ABSENT = "absent"
FILE_RE = re.compile(r"^(?:(?P<dir>groups|tags|instances)/)?(?P<name>[^/]+)\.ya?ml$")
TOP_KEYS = ("settings", "apps", "description")
STR_TAG = "tag:yaml.org,2002:str"
SCALAR_TAGS = {
    "tag:yaml.org,2002:bool": "boolean",
    "tag:yaml.org,2002:int": "number",
    "tag:yaml.org,2002:float": "number",
    STR_TAG: "string",
    "tag:yaml.org,2002:null": "null",
}
DIR_LEVEL = {"groups": Level.GROUP, "tags": Level.TAG, "instances": Level.INSTANCE}

# (level, target, key) → value
DesiredMap = dict[tuple[str, str, str], object]


@dataclass(frozen=True)
class Issue:
    path: str
    line: int
    message: str

    def __str__(self):
        return f"{self.path}, line {self.line}: {self.message}"


class CommitInvalid(Exception):
    """The commit cannot be applied; `issues` lists every problem found."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        shown = "; ".join(str(i) for i in issues[:10])
        more = f" (and {len(issues) - 10} more)" if len(issues) > 10 else ""
        super().__init__(f"Invalid commit: {shown}{more}")


def is_config_path(path: str) -> bool:
    """Files the layout cares about (others, such as README.md, are ignored)."""
    if not path.endswith((".yaml", ".yml")):
        return False
    return "/" not in path or path.split("/", 1)[0] in DIR_LEVEL


def _construct(node):
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _line(node) -> int:
    return node.start_mark.line + 1


def _locate(path: str, groups: set[str], instances: set[str]) -> tuple[tuple[str, str] | None, str | None]:
    """(level, target) for a file path, or an error message."""
    match = FILE_RE.match(path)
    if not match:
        return (
            None,
            "unknown file: use fleet.yaml, groups/<group>.yaml, tags/<key>=<value>.yaml or instances/<instance>.yaml",
        )
    directory, name = match["dir"], match["name"]
    if directory is None:
        if name != "fleet":
            return None, "unknown file at the top level: only fleet.yaml is read there"
        return (Level.FLEET, ""), None
    if directory == "groups":
        if name not in groups:
            return None, f"there is no group named '{name}' in the fleet"
        return (Level.GROUP, name), None
    if directory == "instances":
        if name not in instances:
            return None, f"there is no instance named '{name}' in the fleet"
        return (Level.INSTANCE, name), None
    try:
        key, value = parse_tag(name)
    except ScopeError as exc:
        return None, f"the file name is not a tag: {exc}"
    return (Level.TAG, f"{key}={value}"), None


def _pairs(path, node, what, issues):
    """Key/value node pairs of a mapping node, reporting duplicate and non-string keys."""
    if not isinstance(node, yaml.MappingNode):
        issues.append(Issue(path, _line(node), f"'{what}' must be a mapping of key: value"))
        return []
    seen, pairs = set(), []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
            issues.append(Issue(path, _line(key_node), f"keys under '{what}' must be plain names"))
            continue
        if key_node.value in seen:
            issues.append(Issue(path, _line(key_node), f"'{key_node.value}' appears twice under '{what}'"))
            continue
        seen.add(key_node.value)
        pairs.append((key_node, value_node))
    return pairs


def parse_file(path: str, text: bytes | str, level: str, target: str) -> tuple[DesiredMap, list[Issue]]:
    """Parse and check one file; returns its entries and the problems found."""
    issues: list[Issue] = []
    result: DesiredMap = {}
    try:
        root = yaml.compose(text, Loader=Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = " ".join(filter(None, [exc.context, exc.problem])) or "YAML syntax error"
        return {}, [Issue(path, line, f"YAML syntax error: {reason}")]
    except yaml.YAMLError as exc:
        return {}, [Issue(path, 1, f"YAML error: {exc}")]
    if root is None:
        return {}, []
    for key_node, value_node in _pairs(path, root, "the file", issues):
        section = key_node.value
        if section not in TOP_KEYS:
            issues.append(Issue(path, _line(key_node), f"unknown section '{section}': use settings and apps"))
            continue
        if section == "description" or (isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null")):
            continue
        for k_node, v_node in _pairs(path, value_node, section, issues):
            name, line = k_node.value, _line(k_node)
            kind = SCALAR_TAGS.get(v_node.tag) if isinstance(v_node, yaml.ScalarNode) else None
            if section == "settings":
                if not SETTING_KEY_RE.match(name):
                    issues.append(Issue(path, line, f"'{name}' is not a valid setting key (e.g. ssh.password_auth)"))
                elif kind is None:
                    issues.append(
                        Issue(path, _line(v_node), f"setting '{name}' must be a string, number, boolean or null")
                    )
                else:
                    result[(level, target, name)] = _construct(v_node)
            else:
                if not NAME_RE.match(name):
                    issues.append(Issue(path, line, f"'{name}' is not a valid app name (lowercase, digits, . _ + -)"))
                elif kind != "string":
                    hint = f' — quote it: "{v_node.value}"' if kind == "number" else ""
                    issues.append(
                        Issue(path, _line(v_node), f"app '{name}' must be a version string or 'absent'{hint}")
                    )
                elif v_node.value != ABSENT and not VERSION_RE.match(v_node.value):
                    issues.append(
                        Issue(
                            path,
                            _line(v_node),
                            f"app '{name}': '{v_node.value}' is not a version such as 1.4.2 (or 'absent')",
                        )
                    )
                else:
                    result[(level, target, APP_PREFIX + name)] = v_node.value
    return result, issues


def parse_commit(files: dict[str, bytes], *, groups: set[str], instances: set[str]) -> DesiredMap:
    """Validate every configuration file of a commit and return the desired map, or raise CommitInvalid."""
    issues: list[Issue] = []
    desired: DesiredMap = {}
    seen_targets: dict[tuple[str, str], str] = {}
    for path in sorted(files):
        if not is_config_path(path):
            continue
        where, error = _locate(path, groups, instances)
        if error:
            issues.append(Issue(path, 1, error))
            continue
        if where in seen_targets:
            issues.append(Issue(path, 1, f"{seen_targets[where]} already configures the same target"))
            continue
        seen_targets[where] = path
        entries, file_issues = parse_file(path, files[path], *where)
        issues.extend(file_issues)
        desired.update(entries)
    if issues:
        raise CommitInvalid(issues)
    return desired


def render_file(settings: dict, apps: dict) -> str:
    """A file in the repository format (used by tests, the bench and the docs)."""
    data = {}
    if settings:
        data["settings"] = settings
    if apps:
        data["apps"] = apps
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


def validate_value(key: str, value) -> tuple[str, object]:
    """Check a store entry the panel sets (same rules as the files); returns it, or raises ValueError."""
    key = (key or "").strip()
    if key.startswith(APP_PREFIX):
        name = key[len(APP_PREFIX) :]
        if not NAME_RE.match(name):
            raise ValueError(f"'{name}' is not a valid app name (lowercase, digits, . _ + -).")
        if not isinstance(value, str) or (value != ABSENT and not VERSION_RE.match(value)):
            raise ValueError(f"App '{name}' needs a version such as 1.4.2, or 'absent'.")
        return key, value
    if not SETTING_KEY_RE.match(key):
        raise ValueError(f"'{key}' is not a valid key: a setting such as ssh.password_auth, or app:<name> for an app.")
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"Setting '{key}' must be a string, number, boolean or null (unset).")
    return key, value


def parse_value_text(text: str):
    """A value typed in a form, read as YAML: `false` → False, `22` → 22, `"22"` → "22", `null` → None."""
    try:
        value = yaml.load(text, Loader=Loader) if text.strip() else None  # noqa: S506 - Loader is CSafeLoader/SafeLoader
    except yaml.YAMLError as exc:
        raise ValueError(f"'{text}' is not a value: {exc}") from exc
    if isinstance(value, (dict, list)):
        raise ValueError("A value must be a single string, number or boolean, not a list or mapping.")
    return value
