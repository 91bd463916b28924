"""The repository layout and its validation. Pure logic: no ORM, no network.

    fleet.yaml                      every instance
    groups/<group>.yaml             instances in that group
    tags/<key>=<value>.yaml         instances carrying that tag
    instances/<instance>.yaml       one instance

Each file is a mapping with optional `settings:` (key → string/number/boolean, or null to unset)
and `apps:` (app name → quoted version, or `absent`). The whole commit is validated before
anything is applied; every problem names the file, the line and the reason.
"""

import math
import re
from dataclasses import dataclass

import yaml

from common import versions
from common.validators import unstorable_reason
from common.yamlfiles import STR_TAG, FilesInvalid, Issue, Loader, compose, construct, line, pairs
from fleet.commands import NAME_RE, SETTING_KEY_RE, VERSION_RE
from fleet.scopes import ScopeError, parse_tag

from .choices import Level

APP_PREFIX = "app:"
ABSENT = "absent"
FILE_RE = re.compile(r"^(?:(?P<dir>groups|tags|instances)/)?(?P<name>[^/]+)\.ya?ml\Z")
TOP_KEYS = ("settings", "apps", "description")
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


# The file:line mechanism is shared with the policy files (governance.policyfiles).
CommitInvalid = FilesInvalid


def is_config_path(path: str) -> bool:
    """Files the layout cares about (others, such as README.md, are ignored)."""
    if not path.endswith((".yaml", ".yml")):
        return False
    return "/" not in path or path.split("/", 1)[0] in DIR_LEVEL


_construct, _line = construct, line


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


_pairs = pairs


def _setting_problem(name: str, node) -> str | None:
    kind = SCALAR_TAGS.get(node.tag) if isinstance(node, yaml.ScalarNode) else None
    if kind is None:
        return f"setting '{name}' must be a string, number, boolean or null"
    return value_problem(name, _construct(node))


def _app_problem(name: str, node) -> str | None:
    kind = SCALAR_TAGS.get(node.tag) if isinstance(node, yaml.ScalarNode) else None
    if kind != "string":
        hint = f' — quote it: "{node.value}"' if kind == "number" else ""
        return f"app '{name}' must be a version string or 'absent'{hint}"
    return value_problem(APP_PREFIX + name, node.value)


def parse_file(path: str, text: bytes | str, level: str, target: str) -> tuple[DesiredMap, list[Issue], dict]:
    """Parse and check one file; returns its entries, the problems found and each entry's line."""
    issues: list[Issue] = []
    result: DesiredMap = {}
    lines: dict = {}
    root, syntax = compose(path, text)
    if syntax:
        return {}, syntax, {}
    if root is None:
        return {}, [], {}
    for key_node, value_node in _pairs(path, root, "the file", issues):
        section = key_node.value
        if section not in TOP_KEYS:
            issues.append(Issue(path, _line(key_node), f"unknown section '{section}': use settings and apps"))
            continue
        if section == "description" or (isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null")):
            continue
        for k_node, v_node in _pairs(path, value_node, section, issues):
            name, line = k_node.value, _line(k_node)
            key = name if section == "settings" else APP_PREFIX + name
            problem = key_problem(key)
            if problem is None:
                problem = _setting_problem(name, v_node) if section == "settings" else _app_problem(name, v_node)
                line = _line(v_node)
            if problem:
                issues.append(Issue(path, line, problem))
            else:
                result[(level, target, key)] = _construct(v_node)
                lines[(level, target, key)] = _line(k_node)
    return result, issues, lines


@dataclass
class ParsedCommit:
    """The desired map of a commit and where each key is defined: key → (file, line)."""

    desired: DesiredMap
    locations: dict


def parse_commit(files: dict[str, bytes], *, groups: set[str], instances: set[str], prefix: str = "") -> ParsedCommit:
    """Validate every configuration file of a commit, or raise CommitInvalid listing every problem.

    `files` are keyed by their path relative to the repository's configured sub-directory; `prefix`
    (that directory, with a trailing slash) is put back in front in every message and location."""
    issues: list[Issue] = []
    parsed = ParsedCommit({}, {})
    seen_targets: dict[tuple[str, str], str] = {}
    for path in sorted(files):
        if not is_config_path(path):
            continue
        shown = prefix + path
        where, error = _locate(path, groups, instances)
        if error:
            issues.append(Issue(shown, 1, error))
            continue
        if where in seen_targets:
            issues.append(Issue(shown, 1, f"{seen_targets[where]} already configures the same target"))
            continue
        seen_targets[where] = shown
        entries, file_issues, lines = parse_file(shown, files[path], *where)
        issues.extend(file_issues)
        parsed.desired.update(entries)
        parsed.locations.update({key: (shown, line) for key, line in lines.items()})
    if issues:
        raise CommitInvalid(issues)
    return parsed


def render_file(settings: dict, apps: dict) -> str:
    """A file in the repository format (used by tests, the bench and the docs)."""
    data = {}
    if settings:
        data["settings"] = settings
    if apps:
        data["apps"] = apps
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


MAX_TEXT_VALUE = 4096


def key_problem(key: str) -> str | None:
    """Why `key` cannot be a desired-configuration key (files, the API and the forms alike), or None."""
    if not isinstance(key, str):
        return "a key must be text"
    if reason := unstorable_reason(key):
        return f"the key cannot be stored: {reason}"
    if key.startswith(APP_PREFIX):
        name = key[len(APP_PREFIX) :]
        if not NAME_RE.match(name):
            return f"'{name}' is not a valid app name (lowercase, digits, . _ + -)"
        return None
    if not SETTING_KEY_RE.match(key):
        return f"'{key}' is not a valid setting key (e.g. ssh.password_auth), or app:<name> for an app"
    return None


def value_problem(key: str, value) -> str | None:
    """Why `value` cannot be the value of `key`, or None. Apps take a version or 'absent'; settings a
    string (storable, at most 4096 characters), a finite number, a boolean, or null to unset."""
    if key.startswith(APP_PREFIX):
        name = key[len(APP_PREFIX) :]
        if value == ABSENT:
            return None
        if not isinstance(value, str) or not versions.is_valid(value) or not VERSION_RE.match(value):
            shown = value if isinstance(value, str) and not unstorable_reason(value) else repr(value)
            return f"app '{name}': '{shown}' is not a version such as 1.4.2 (or 'absent')"
        return None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if math.isfinite(value) else f"setting '{key}' must be a finite number"
    if isinstance(value, str):
        if reason := unstorable_reason(value):
            return f"setting '{key}' cannot be stored: {reason}"
        if len(value) > MAX_TEXT_VALUE:
            return f"setting '{key}' is longer than {MAX_TEXT_VALUE} characters"
        return None
    return f"setting '{key}' must be a string, number, boolean or null (unset)"


def validate_value(key: str, value) -> tuple[str, object]:
    """Check a store entry the panel sets (same rules as the files); returns it, or raises ValueError."""
    key = key.strip() if isinstance(key, str) else key
    problem = key_problem(key) or value_problem(key, value)
    if problem:
        raise ValueError(problem[0].upper() + problem[1:] + ".")
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
