"""Whether an app is running: the systemd unit of the same name (or the one configured in
`report.units`), from `systemctl list-unit-files` and `systemctl show`.

A package without a unit (a library, a command-line tool) has nothing to stop, so it counts as
running; the panel's "running" rules are meant for services. Without systemd as the service manager
(containers, CI) nothing can be asked, and every app counts as running.
"""

from __future__ import annotations

from ._common import SourceError

SHOW_PROPERTIES = "Id,LoadState,ActiveState,SubState"
RUNNING_STATES = ("active", "reloading")
BATCH = 200


def parse_unit_files(text: str) -> set[str]:
    """Unit names from `systemctl list-unit-files --no-legend` (the first column)."""
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if parts and "." in parts[0] and not parts[0].endswith("@.service"):
            names.add(parts[0])
    return names


def parse_show(text: str) -> list[dict[str, str]]:
    """[{property: value}] from `systemctl show -p ...` of several units: one block per unit asked, in
    the order asked, separated by blank lines."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if block:
                blocks.append(block)
            block = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            block[key] = value
    return blocks


def by_unit(asked: list[str], blocks: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Blocks keyed by the name asked: an alias (sshd.service) answers with its unit's Id (ssh.service)."""
    if len(blocks) == len(asked):
        return dict(zip(asked, blocks, strict=True))
    return {b["Id"]: b for b in blocks if b.get("Id")}


def is_running(props: dict[str, str]) -> bool:
    return props.get("LoadState") == "loaded" and props.get("ActiveState") in RUNNING_STATES


def unit_for(app: str, overrides: dict[str, str]) -> str:
    unit = overrides.get(app) or app
    return unit if "." in unit else unit + ".service"


def running_states(host, apps: list[str]) -> dict[str, bool]:
    """{app: running} for the apps that have a unit; apps without one are absent from the result."""
    if not host.systemd_running:
        return {}
    listed = host.run(["systemctl", "list-unit-files", "--type=service", "--no-legend", "--no-pager"], timeout=30)
    if not listed.ok:
        raise SourceError(f"systemctl list-unit-files: {listed.why()}")
    have = parse_unit_files(listed.stdout)
    wanted = {app: unit_for(app, host.config.units) for app in apps}
    units = sorted({u for u in wanted.values() if u in have})
    props: dict[str, dict[str, str]] = {}
    for start in range(0, len(units), BATCH):
        batch = units[start : start + BATCH]
        shown = host.run(["systemctl", "show", "-p", SHOW_PROPERTIES, "--", *batch], timeout=30)
        if not shown.ok:
            raise SourceError(f"systemctl show: {shown.why()}")
        props.update(by_unit(batch, parse_show(shown.stdout)))
    return {app: is_running(props[unit]) for app, unit in wanted.items() if unit in props}
