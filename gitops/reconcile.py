"""Three-way merge of Git into the desired-configuration store, effective configuration, and the
commands that drive an instance towards it. Pure logic: no ORM.

Per key there are three values: the base (what Git said at the last sync), the panel's value, and
Git's value in the new commit. "Absent" is a value too (a key Git removed, or the panel deleted).

    Git changed, panel unchanged        → apply Git
    panel changed, Git unchanged        → drift: server_wins/manual keep the panel, git_wins reverts it
    both changed to the same value      → converge (nothing to do but move the base)
    both changed to different values    → conflict: server_wins keeps the panel, git_wins takes Git,
                                          manual records a conflict and the sync applies nothing
Keys Git never had (no base, not in the commit) belong to the panel and are left alone.
"""

from dataclasses import dataclass, field

from fleet.choices import CommandType

from .choices import LEVEL_RANK, ConflictStrategy, Level
from .repoformat import ABSENT, APP_PREFIX

Key = tuple[str, str, str]
MISSING = object()


def same(a, b) -> bool:
    """Equality that tells True from 1 and "1" from 1, as a configuration value must."""
    return type(a) is type(b) and a == b


@dataclass
class StoreState:
    present: bool
    value: object
    in_git: bool
    git_base: object


@dataclass
class MergeResult:
    # key → new StoreState (None: delete the row)
    writes: dict = field(default_factory=dict)
    # [{"level", "target", "key", "action", "before", "after"}]
    changes: list = field(default_factory=list)
    # [{"key": Key, "base_present", "base_value", "panel_present", "panel_value", "git_present", "git_value"}]
    conflicts: list = field(default_factory=list)
    drift: list = field(default_factory=list)


def _val(present, value):
    return value if present else MISSING


def _eq(a, b) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return same(a, b)


def _show(v):
    return None if v is MISSING else v


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
        level, target, name = key
        record = {"level": level, "target": target, "key": name}
        if not git_changed and not panel_changed:
            continue
        if git_changed and not panel_changed:
            result.writes[key] = _state(new, new)
            result.changes.append({**record, "action": "git_applied", "before": _show(panel), "after": _show(new)})
        elif panel_changed and not git_changed:
            if strategy == ConflictStrategy.GIT_WINS:
                result.writes[key] = _state(base, base)
                result.changes.append(
                    {**record, "action": "drift_reverted", "before": _show(panel), "after": _show(base)}
                )
            else:
                result.drift.append({**record, "panel": _show(panel), "git": _show(base)})
        elif _eq(panel, new):
            result.writes[key] = _state(new, new)
            result.changes.append({**record, "action": "converged", "before": _show(panel), "after": _show(new)})
        elif strategy == ConflictStrategy.SERVER_WINS:
            result.writes[key] = _state(panel, new)
            result.changes.append(
                {
                    **record,
                    "action": "conflict_panel_kept",
                    "before": _show(panel),
                    "after": _show(panel),
                    "git": _show(new),
                }
            )
        elif strategy == ConflictStrategy.GIT_WINS:
            result.writes[key] = _state(new, new)
            result.changes.append(
                {**record, "action": "conflict_git_taken", "before": _show(panel), "after": _show(new)}
            )
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
    return result


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
