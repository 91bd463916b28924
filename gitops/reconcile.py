"""Three-way merge of Git into the desired-configuration store, effective configuration, and the
commands that drive an instance towards it. Pure logic: no ORM.

Per key there are three values: the base (what Git said at the last sync), the panel's value, and
Git's value in the commit being synced ("absent" is a value too). A sync looks only at the keys its
repository owns, plus panel-owned keys the commit now defines. The strategy decides every divergence,
on every sync — also when the commit is the one already applied (Git's value is then the base):

    Git changed, panel unchanged        → apply Git (every strategy)
    panel equals Git                    → converged (the base moves)
    panel changed, Git unchanged        → git_wins reverts the panel edit; server_wins keeps it;
                                          manual opens a conflict (unless an admin already kept it)
    both changed, to different values   → git_wins takes Git; server_wins keeps the panel value and
                                          records Git's as overridden; manual opens a conflict
Keys Git never had (no base, not in the commit) belong to the panel and are left alone.
"""

from dataclasses import dataclass, field

from fleet.choices import CommandType

from .choices import LEVEL_RANK, ConflictStrategy, Level
from .repoformat import ABSENT, APP_PREFIX

Key = tuple[str, str, str]
MISSING = object()

# What each `action` of a run's `changes` means, in the words the run page shows.
DECISIONS = {
    "git_applied": "Git's change applied",
    "converged": "panel already had Git's value",
    "drift_reverted": "panel edit reverted to Git (git_wins)",
    "drift_kept": "panel edit kept over Git (server_wins)",
    "conflict_git_taken": "both changed: Git's value taken (git_wins)",
    "git_overridden": "both changed: panel kept, Git's change overridden (server_wins)",
    "override_kept": "value an admin kept in a conflict stays (manual)",
    "conflict": "conflict: an admin decides (manual)",
}


def same(a, b) -> bool:
    """Equality that tells True from 1 and "1" from 1, as a configuration value must."""
    return type(a) is type(b) and a == b


@dataclass
class StoreState:
    present: bool
    value: object
    in_git: bool
    git_base: object
    accepted: bool = False  # an admin kept this non-Git value in a conflict resolution


@dataclass
class MergeResult:
    # key → new StoreState (None: delete the row)
    writes: dict = field(default_factory=dict)
    # What the strategy decided, per key: [{"level", "target", "key", "action", "effect", "before", "after"}]
    changes: list = field(default_factory=list)
    # [{"key": Key, "base_present", "base_value", "panel_present", "panel_value", "git_present", "git_value"}]
    conflicts: list = field(default_factory=list)
    # Keys Git no longer has whose row goes: candidates for pruning on the instances.
    removed: set = field(default_factory=set)

    @property
    def drift(self) -> list:
        return [c for c in self.changes if c["effect"] == "kept"]


def _val(present, value):
    return value if present else MISSING


def _eq(a, b) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return same(a, b)


def _show(v):
    return None if v is MISSING else v


def _effect(before, after) -> str:
    if _eq(before, after):
        return "kept"
    if before is MISSING:
        return "added"
    return "removed" if after is MISSING else "changed"


def merge(store: dict[Key, StoreState], git: dict[Key, object], strategy: str) -> MergeResult:
    """Decide, key by key, what the store becomes after this commit (see the module docstring)."""
    result = MergeResult()
    for key in sorted(set(store) | set(git)):
        entry = store.get(key)
        base = _val(entry.in_git, entry.git_base) if entry else MISSING
        panel = _val(entry.present, entry.value) if entry else MISSING
        new = git.get(key, MISSING)
        if base is MISSING and new is MISSING:
            continue  # the panel's own key: Git never managed it
        git_changed, panel_changed = not _eq(new, base), not _eq(panel, base)
        if not git_changed and not panel_changed:
            continue
        if not panel_changed or _eq(panel, new):
            action = "git_applied" if not panel_changed else "converged"
            _decide(result, key, action, panel, new, write=(new, new))
        elif strategy == ConflictStrategy.GIT_WINS:
            _decide(
                result, key, "conflict_git_taken" if git_changed else "drift_reverted", panel, new, write=(new, new)
            )
        elif strategy == ConflictStrategy.SERVER_WINS:
            if git_changed:
                _decide(result, key, "git_overridden", panel, panel, write=(panel, new), git=new)
            else:
                _decide(result, key, "drift_kept", panel, panel, git=new)
        elif not git_changed and entry.accepted:
            _decide(result, key, "override_kept", panel, panel, git=new)
        else:
            result.conflicts.append(
                {
                    "key": key,
                    "base_present": base is not MISSING,
                    "base_value": _show(base),
                    "panel_present": panel is not MISSING,
                    "panel_value": _show(panel),
                    "git_present": new is not MISSING,
                    "git_value": _show(new),
                }
            )
            level, target, name = key
            result.changes.append(
                {
                    "level": level,
                    "target": target,
                    "key": name,
                    "action": "conflict",
                    "effect": "conflict",
                    "before": _show(panel),
                    "after": _show(panel),
                    "git": _show(new),
                }
            )
    return result


def _decide(result: MergeResult, key: Key, action: str, before, after, *, write=None, git=MISSING) -> None:
    level, target, name = key
    record = {
        "level": level,
        "target": target,
        "key": name,
        "action": action,
        "effect": _effect(before, after),
        "before": _show(before),
        "after": _show(after),
    }
    if git is not MISSING or action in ("git_overridden", "drift_kept", "override_kept"):
        record["git"] = _show(git)
    result.changes.append(record)
    if write is not None:
        state = _state(*write)
        result.writes[key] = state
        if write[1] is MISSING and (state is None or not state.present):
            result.removed.add(key)


def _state(value, base) -> StoreState | None:
    if value is MISSING and base is MISSING:
        return None
    return StoreState(
        present=value is not MISSING, value=_show(value), in_git=base is not MISSING, git_base=_show(base)
    )


class EntryIndex:
    """Present entries indexed by level and target, for computing many instances' effective config."""

    def __init__(self, entries):
        self.by_level = {level: {} for level in Level.values}
        for level, target, key, value in entries:
            self.by_level[level].setdefault(target, {})[key] = value

    def effective(self, *, name: str, groups, tags) -> dict[str, tuple[object, str]]:
        """key → (value, source) for one instance. Precedence: instance > tag > group > fleet; among
        several groups (or tags) of the same instance the name that sorts first wins."""
        result: dict[str, tuple[object, str]] = {}
        for key, value in self.by_level[Level.FLEET].get("", {}).items():
            result[key] = (value, "fleet")
        for level, targets in ((Level.GROUP, groups), (Level.TAG, tags)):
            found = self.by_level[level]
            for target in sorted(targets, reverse=True):
                for key, value in found.get(target, {}).items():
                    result[key] = (value, f"{level} {target}")
        for key, value in self.by_level[Level.INSTANCE].get(name, {}).items():
            result[key] = (value, f"instance {name}")
        return result

    def targets(self, level: str) -> set[str]:
        return set(self.by_level[level])

    def has_fleet_entries(self) -> bool:
        return bool(self.by_level[Level.FLEET].get(""))


def plan_commands(desired: dict[str, object], state: dict) -> list[tuple[str, dict]]:
    """The commands that move a reported state to the desired configuration (set_config first)."""
    reported = state.get("settings") or {}
    apps = {a.get("name"): a for a in state.get("apps") or []}
    values, unset, app_commands = {}, [], []
    for key in sorted(desired):
        value = desired[key]
        if key.startswith(APP_PREFIX):
            app = key[len(APP_PREFIX) :]
            installed = apps.get(app)
            if value == ABSENT:
                if installed is not None:
                    app_commands.append((CommandType.UNINSTALL_APP, {"app": app}))
            elif installed is None:
                app_commands.append((CommandType.INSTALL_APP, {"app": app, "version": value}))
            elif str(installed.get("version")) != value:
                app_commands.append((CommandType.UPDATE_APP, {"app": app, "version": value}))
        elif value is None:
            if key in reported:
                unset.append(key)
        elif key not in reported or not same(reported[key], value):
            values[key] = value
    commands = []
    if values or unset:
        commands.append((CommandType.SET_CONFIG, {"values": values, "unset": unset}))
    return commands + app_commands


def level_rank(level: str) -> int:
    return LEVEL_RANK[level]
