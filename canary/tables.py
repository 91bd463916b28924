"""The canary deployments list table (common.tables)."""

from common.tables import Column, Table


class CanaryTable(Table):
    name = "canary-deployments"
    rows_template = "canary/_list_body.html"
    empty_title = "No canary deployments yet"
    empty_text = (
        "A canary deployment sends a change to a few instances first, watches their health, then rolls it out "
        "to the rest or rolls it back by itself."
    )
    columns = [
        Column("id", html=False),
        Column("deployment", "Deployment", value=str, sort="id"),
        Column("change", "Change", value="change_label"),
        Column("scope", "Scope", value="scope_label"),
        Column("phase", "Phase", sort="phase"),
        Column("paused", html=False),
        Column("canary", "Canary", value="canary_count", sort="canary", css="text-end"),
        Column("excluded", value="excluded_count", html=False),
        Column("reached", "Reached", value="reached_count", sort="reached", css="text-end"),
        Column("started_at", "Started", sort="started"),
        Column("finished_at", html=False),
        Column("created_by", value="created_by.username", html=False),
    ]
