"""The fleet's list tables (common.tables): servers, groups, tags, registration tokens, the command queue."""

from common.tables import Column, Table

from . import selectors


def _names(relation):
    return lambda obj: [o.name for o in getattr(obj, relation).all()]  # prefetched by the list's selector


def _tags(obj):
    return [str(t) for t in obj.tags.all()]


def _has_compliance(view) -> bool:
    return getattr(view, "show_compliance", False)


def _can(role_attr):
    return lambda view: getattr(view.request.user, "has_role", lambda r: False)(role_attr)


class ServerTable(Table):
    name = "servers"
    rows_template = "fleet/_server_rows.html"
    empty_title = "No servers yet"
    empty_text = "Create a registration token and start an agent with it; the server appears here when it registers."
    columns = [
        Column("id", html=False),
        Column("name", "Name", sort="name"),
        Column("hostname", html=False),
        Column("status", "Status", sort="status"),
        Column("os_version", "OS", sort="os"),
        Column("compliance", "Compliance", value="compliance.score", sort="compliance", show=_has_compliance),
        Column("groups_and_tags", "Groups and tags", export=False),
        Column("groups", value=_names("groups"), html=False),
        Column("tags", value=_tags, html=False),
        Column("address", html=False),
        Column("last_seen_at", "Last seen", sort="last_seen"),
    ]


class GroupTable(Table):
    name = "groups"
    rows_template = "fleet/_group_rows.html"
    empty_title = "No groups yet"
    empty_text = "Groups organise servers (e.g. web, databases) and are targets for policies, commands and canaries."
    columns = [
        Column("id", html=False),
        Column("name", "Name", sort="name"),
        Column("description", "Description"),
        Column("servers", "Servers", value="instance_count", sort="servers", css="text-end"),
        Column("actions", "", export=False, show=lambda view: view.can_write),
    ]


class TagTable(Table):
    name = "tags"
    rows_template = "fleet/_tag_rows.html"
    empty_title = "No tags yet"
    empty_text = "Tags are key=value labels (env=production) that servers carry; policies, commands and canaries can target them."
    columns = [
        Column("key", "Key", sort="tag"),
        Column("value", "Value", sort="value"),
        Column("servers", "Servers", value="server_count", sort="servers", css="text-end"),
        Column(
            "selected_by",
            "Selected by",
            value=lambda t: [f"{u['kind']} {u['name']}" for u in t.selected_by],
        ),
        Column("actions", "", export=False, show=lambda view: view.can_write),
    ]

    def prepare(self, rows):
        if not hasattr(self, "_usage"):
            self._usage = selectors.tag_usage()  # once per page or export, not per row
        for tag in rows:
            tag.selected_by = self._usage.get(str(tag), [])
        return rows


class TokenTable(Table):
    name = "registration-tokens"
    rows_template = "fleet/_token_rows.html"
    empty_title = "No registration tokens"
    empty_text = "An agent registers with a token; create one to add servers to the fleet."
    columns = [
        Column("id", html=False),
        Column("name", "Name", sort="name"),
        Column("status", "State"),
        Column("uses", "Uses", value="use_count", sort="uses"),
        Column("max_uses", html=False),
        Column("expires_at", "Expires", sort="expires"),
        Column("assigns", "Assigns", export=False),
        Column("groups", value=_names("groups"), html=False),
        Column("tags", value=lambda t: list(t.tags), html=False),
        Column("created", "Created", sort="created"),
        Column("created_by", value="created_by.username", html=False),
        Column("actions", "", export=False, show=lambda view: view.can_write),
    ]


class CommandTable(Table):
    name = "commands"
    rows_template = "fleet/_command_rows.html"
    empty_title = "The queue is empty"
    empty_text = "Commands install, update, start or stop apps, update the OS or change settings on one server, a group or a tag filter."
    columns = [
        Column("id", "#", sort="id"),
        Column("command", "Command", value=str, sort="kind"),
        Column("kind", html=False),
        Column("description", html=False),
        Column("target", "Target", value="scope_label"),
        Column("source", "Source", value="get_source_display", sort="source"),
        Column("runs", "Runs", value="run_total", sort="runs"),
        Column("runs_completed", value="run_completed", html=False),
        Column("runs_failed", value="run_failed", html=False),
        Column("created", "Queued", sort="created"),
        Column("created_by", value="created_by.username", html=False),
    ]
