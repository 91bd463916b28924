"""GitOps list tables (common.tables): repositories, a repository's sync runs, conflicts."""

import json

from common.tables import Column, Table


def _json(field):
    def value(conflict):
        present = getattr(conflict, f"{field}_present")
        return json.dumps(getattr(conflict, f"{field}_value")) if present else ""

    return value


class RepositoryTable(Table):
    name = "gitops-repositories"
    rows_template = "gitops/_repository_body.html"
    empty_title = "No repository connected"
    empty_text = "Connect a Git repository holding fleet.yaml, groups/, tags/ and instances/ files to sync configuration to the fleet."
    columns = [
        Column("id", html=False),
        Column("name", "Repository", sort="name"),
        Column("url", html=False),
        Column("branch", "Branch", sort="branch"),
        Column("status", "Status", sort="status"),
        Column("last_error", html=False),
        Column("last_commit_sha", "Commit"),
        Column("last_sync_at", "Last sync", sort="last_sync"),
        Column("next_sync_at", "Next sync", sort="next_sync"),
        Column("conflict_strategy", "Strategy"),
        Column("open_conflicts", "Conflicts", sort="conflicts"),
    ]


class SyncRunTable(Table):
    name = "gitops-sync-runs"
    rows_template = "gitops/_run_rows.html"
    empty_title = "No syncs yet"
    empty_text = "The first sync runs once the host key is confirmed."
    columns = [
        Column("id", "#"),
        Column("started_at", "Started"),
        Column("finished_at", html=False),
        Column("trigger", "Trigger"),
        Column("dry_run", html=False),
        Column("status", "Status"),
        Column("commit_sha", "Commit"),
        Column("changes", "Changes", value=lambda r: len(r.changes)),
        Column("commands_issued", "Commands"),
        Column("conflicts_opened", html=False),
        Column(
            "duration_seconds", "Duration", value=lambda r: round(r.duration, 3) if r.duration is not None else None
        ),
        Column("errors", value="errors", html=False),
    ]


class ConflictTable(Table):
    """The conflicts page shows cards (values side by side, resolve buttons); the table is its CSV."""

    name = "gitops-conflicts"
    columns = [
        Column("id"),
        Column("repository", value="repository.name"),
        Column("level"),
        Column("target"),
        Column("key"),
        Column("base_value", value=_json("base")),
        Column("panel_value", value=_json("panel")),
        Column("git_value", value=_json("git")),
        Column("commit_sha"),
        Column("detected_at"),
        Column("status"),
    ]
