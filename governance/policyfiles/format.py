"""The policy file: parse, check and render. Pure logic (no ORM): names of groups and instances come in.

    name: Require monitoring            # required, unique (case-insensitive)
    description: Every server runs it   # optional
    type: required_apps                 # required_apps | blocked_apps | update_rules | baseline
    enabled: true                       # default true
    mode: audit                         # audit | enforce, default audit
    scope: {kind: groups, groups: [web]}  # default all; groups/instances by name, tags as key=value
    rules:                              # the canonical rules of the type, checked by governance.rules
      apps: [{name: monitoring-agent, min_version: "1.2"}]

A file holds one policy, or `policies:` with a list of them (what the export writes as one document).
"""

import base64
import io
import re
import zipfile

import yaml

from common.exceptions import ApplicationError
from common.validators import unstorable_reason
from common.yamlfiles import STR_TAG, FilesInvalid, Issue, compose, construct, line, line_of, pairs
from fleet.choices import ScopeKind
from fleet.scopes import ScopeError, parse_tag_filter

from ..choices import PolicyMode, PolicyType
from ..rules import RuleError, validate_rules

KEYS = ("name", "description", "type", "enabled", "mode", "scope", "rules")
SCOPE_KEYS = {
    ScopeKind.ALL: ("kind",),
    ScopeKind.GROUPS: ("kind", "groups"),
    ScopeKind.TAGS: ("kind", "tags"),
    ScopeKind.INSTANCES: ("kind", "instances"),
}
NAME_MAX = 120
MAX_FILES = 1000
MAX_BYTES = 10 * 1024 * 1024


def is_policy_file(path: str) -> bool:
    return path.endswith((".yaml", ".yml"))


def scope_document(kind: str, groups=(), tags=(), instances=()) -> dict:
    """A scope as files write it: names, never database ids, so a file is portable between panels."""
    kind = str(kind)
    if kind == ScopeKind.GROUPS:
        return {"kind": kind, "groups": sorted(groups)}
    if kind == ScopeKind.TAGS:
        return {"kind": kind, "tags": list(tags)}
    if kind == ScopeKind.INSTANCES:
        return {"kind": kind, "instances": sorted(instances)}
    return {"kind": "all"}


def document(*, name, description, policy_type, enabled, mode, scope: dict, rules: dict) -> dict:
    """The one comparable form of a policy: what export writes, versions keep and import compares."""
    return {
        "name": name,
        "description": description or "",
        "type": str(policy_type),
        "enabled": bool(enabled),
        "mode": str(mode),
        "scope": scope,
        "rules": rules,
    }


def _strip_nulls(value):
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _ordered(doc: dict) -> dict:
    """The file's key order (a document read back from jsonb has PostgreSQL's order), unset rule fields out."""
    doc = _strip_nulls(doc)
    ordered = {k: doc[k] for k in KEYS if k in doc}
    if isinstance(ordered.get("scope"), dict):
        ordered["scope"] = {"kind": ordered["scope"].get("kind"), **ordered["scope"]}
    return ordered


def render(doc: dict) -> str:
    """One policy file (unset rule fields left out: reading it back gives the same canonical rules)."""
    return yaml.safe_dump(_ordered(doc), sort_keys=False, allow_unicode=True, default_flow_style=False)


def render_all(docs: list[dict]) -> str:
    return yaml.safe_dump(
        {"policies": [_ordered(d) for d in docs]}, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def file_name(name: str, taken: set[str]) -> str:
    """policies/<slug>.yaml for a policy name, unique within `taken` (which it extends)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "policy"
    candidate, n = f"policies/{slug}.yaml", 1
    while candidate in taken:
        n += 1
        candidate = f"policies/{slug}-{n}.yaml"
    taken.add(candidate)
    return candidate


def render_zip(docs: list[dict]) -> bytes:
    buffer, taken = io.BytesIO(), set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for doc in docs:
            archive.writestr(file_name(doc["name"], taken), render(doc))
    return buffer.getvalue()


MAX_ENTRIES = 20 * MAX_FILES
_DRIVE = re.compile(r"^[A-Za-z]:")


def bad_path(path: str) -> str | None:
    """Why a file's name cannot be taken (it must be a relative path inside the upload), or None."""
    if not path or "\0" in path or unstorable_reason(path):
        return "a file name must be text without NUL characters"
    if path.startswith("/") or "\\" in path or _DRIVE.match(path) or ".." in path.split("/"):
        return f"the file name '{path[:200]}' is not a relative path inside the upload ('..', '/', '\\' and drives are not)"
    return None


ZIP_BASE64_INVALID = "zip_base64 is not base64, so the zip cannot be read: send (or upload) the zip again."


def read_zip_base64(text: str) -> dict[str, bytes]:
    """read_zip of a zip sent as base64 text: the API's `zip_base64`, and the import page's upload
    carried from Preview to Apply. Text that is not base64 is refused on that field."""
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII at all
        raise ApplicationError(ZIP_BASE64_INVALID, field="zip_base64") from None
    return read_zip(data)


def read_zip(data: bytes) -> dict[str, bytes]:
    """The YAML files of a zip upload (others ignored); FilesInvalid when it is not a usable zip.

    Bounded by what is inflated, not what the headers declare: each member is read at most to what is
    left of MAX_BYTES. Member names must be relative paths inside the archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise FilesInvalid([Issue("upload.zip", 1, f"at most {MAX_ENTRIES} entries in one zip")])
        members = [m for m in entries if not m.is_dir() and is_policy_file(m.filename)]
        names = [bad_path(m.orig_filename) for m in entries]
        if named := [Issue("upload.zip", 1, why) for why in names if why]:
            raise FilesInvalid(named)
        if len(members) > MAX_FILES or sum(m.file_size for m in members) > MAX_BYTES:
            raise FilesInvalid([Issue("upload.zip", 1, f"at most {MAX_FILES} files and 10 MB of YAML in one zip")])
        files, left = {}, MAX_BYTES
        for m in members:
            with archive.open(m) as member:
                files[m.filename] = member.read(left + 1)
            left -= len(files[m.filename])
            if left < 0:
                raise FilesInvalid([Issue("upload.zip", 1, "the zip inflates to more than 10 MB of YAML")])
        return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise FilesInvalid([Issue("upload.zip", 1, f"not a zip file: {exc}")]) from exc
    except NotImplementedError as exc:
        raise FilesInvalid([Issue("upload.zip", 1, f"this zip cannot be read: {exc}")]) from exc


class _File:
    """Problems of one file, each placed on its line."""

    def __init__(self, path: str, issues: list[Issue]):
        self.path, self.issues = path, issues

    def add(self, node, message: str, at: int | None = None) -> None:
        self.issues.append(Issue(self.path, at or line(node), message))


def _scalar(f: _File, node, key: str, kind: type, default=None):
    if node is None:
        return default
    value = construct(node) if isinstance(node, yaml.ScalarNode) else node
    if kind is str and isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and value is None and default is not None:
        return default
    f.add(node, f"'{key}' must be {'true or false' if kind is bool else 'text'}")
    return default


def _scope(f: _File, node, groups: set[str], instances: set[str]) -> dict:
    if node is None:
        return scope_document(ScopeKind.ALL)
    items = dict((k.value, v) for k, v in pairs(f.path, node, "scope", f.issues))
    kind = _scalar(f, items.get("kind"), "scope.kind", str, ScopeKind.ALL)
    if kind not in ScopeKind.values:
        f.add(items["kind"], f"unknown scope kind '{kind}': use {', '.join(ScopeKind.values)}")
        return scope_document(ScopeKind.ALL)
    for key, value_node in items.items():
        if key not in SCOPE_KEYS[kind]:
            f.add(value_node, f"'{key}' does not belong in a scope of kind {kind}: use {', '.join(SCOPE_KEYS[kind])}")
    if kind == ScopeKind.ALL:
        return scope_document(kind)
    listed = items.get(kind)
    if listed is None:
        f.add(node, f"a scope of kind {kind} lists its {kind}")
        return scope_document(ScopeKind.ALL)
    values = construct(listed)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        f.add(listed, f"'scope.{kind}' must be a non-empty list of names")
        return scope_document(ScopeKind.ALL)
    if kind == ScopeKind.TAGS:
        try:
            return scope_document(kind, tags=parse_tag_filter(values))
        except ScopeError as exc:
            f.add(listed, str(exc))
            return scope_document(ScopeKind.ALL)
    known = groups if kind == ScopeKind.GROUPS else instances
    what = "group" if kind == ScopeKind.GROUPS else "instance"
    for i, value in enumerate(values):
        if value not in known:
            f.add(listed.value[i], f"there is no {what} named '{value}' in the fleet")
    return scope_document(kind, **{kind: sorted(set(values))})


def _policy(f: _File, node, groups: set[str], instances: set[str]) -> dict | None:
    """One policy mapping → its document (with `line`), or None when it has problems (recorded in f)."""
    before = len(f.issues)
    items = {}
    for key_node, value_node in pairs(f.path, node, "the policy", f.issues):
        if key_node.value not in KEYS:
            f.add(key_node, f"unknown key '{key_node.value}': use {', '.join(KEYS)}")
        items[key_node.value] = value_node
    if not isinstance(node, yaml.MappingNode):
        return None
    for required in ("name", "type", "rules"):
        if required not in items:
            f.add(node, f"'{required}' is missing")
    name = (_scalar(f, items.get("name"), "name", str, "") or "").strip()
    if "name" in items and not name:
        f.add(items["name"], "'name' must not be empty")
    elif len(name) > NAME_MAX:
        f.add(items["name"], f"'name' is longer than {NAME_MAX} characters")
    policy_type = _scalar(f, items.get("type"), "type", str, "")
    if "type" in items and policy_type not in PolicyType.values:
        f.add(items["type"], f"unknown policy type '{policy_type}': use {', '.join(PolicyType.values)}")
    mode = _scalar(f, items.get("mode"), "mode", str, PolicyMode.AUDIT)
    if mode not in PolicyMode.values:
        f.add(items["mode"], f"'mode' must be {' or '.join(PolicyMode.values)}")
    rules = None
    if "rules" in items and policy_type in PolicyType.values:
        try:
            rules = validate_rules(policy_type, construct(items["rules"]))
        except RuleError as exc:
            for path, messages in exc.errors.items():
                for message in messages:
                    shown = f"rules.{path}: {message}" if path else f"rules: {message}"
                    f.add(items["rules"], shown, at=line_of(items["rules"], path))
    doc = document(
        name=name,
        description=_scalar(f, items.get("description"), "description", str, ""),
        policy_type=policy_type,
        enabled=_scalar(f, items.get("enabled"), "enabled", bool, True),
        mode=mode,
        scope=_scope(f, items.get("scope"), groups, instances),
        rules=rules,
    )
    if len(f.issues) > before:
        return None
    return {**doc, "line": line(items["name"]), "file": f.path}


def parse_files(files: dict[str, bytes | str], *, groups: set[str], instances: set[str], prefix="") -> list[dict]:
    """Every policy of a set of files, checked together, or FilesInvalid naming every problem of every file.

    A name may appear once in the whole set (case-insensitive). Each document has `file` and `line`."""
    issues: list[Issue] = []
    docs, seen = [], {}
    for path in sorted(files):
        if not is_policy_file(path):
            continue
        f = _File(prefix + path, issues)
        if why := bad_path(path):
            f.issues.append(Issue("upload", 1, why))
            continue
        root, syntax = compose(f.path, files[path], storable=True)
        issues.extend(syntax)
        if root is None:
            continue
        nodes = [root]
        if isinstance(root, yaml.MappingNode) and any(k.value == "policies" for k, _ in root.value):
            bundle = dict((k.value, v) for k, v in pairs(f.path, root, "the file", issues))
            for key in bundle:
                if key != "policies":
                    f.add(bundle[key], f"a file with 'policies:' holds nothing else ('{key}')")
            nodes = bundle["policies"].value if isinstance(bundle["policies"], yaml.SequenceNode) else []
            if not isinstance(bundle["policies"], yaml.SequenceNode):
                f.add(bundle["policies"], "'policies' must be a list of policies")
        for node in nodes:
            doc = _policy(f, node, groups, instances)
            if doc is None:
                continue
            other = seen.get(doc["name"].lower())
            if other:
                f.add(
                    node, f"a policy named '{doc['name']}' is already defined in {other['file']}, line {other['line']}"
                )
                continue
            seen[doc["name"].lower()] = doc
            docs.append(doc)
    if issues:
        raise FilesInvalid(issues)
    return docs
