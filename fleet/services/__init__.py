"""Every write to the fleet, by sub-domain. Import from here: `from fleet import services` or
`from fleet.services import command_create`; the modules behind it may move.

- `inventory`: groups, tags, instance edits, scopes stored on objects;
- `registration`: registration tokens, agents registering, agent credentials;
- `heartbeats`: reported state (full path and fast lane), offline marking;
- `command_queue`: commands queued, delivered, reported, reverted, expired;
- `licenses`: license upload and the instance limit.
"""

from .command_queue import (
    CommandSpec,
    agent_commands_fetch,
    command_create,
    command_create_many,
    command_run_report,
    command_run_revert,
    command_runs_expire,
)
from .heartbeats import (
    heartbeat_digest,
    heartbeat_record,
    heartbeat_touch,
    instances_mark_offline,
)
from .inventory import (
    group_create,
    group_delete,
    group_update,
    instance_delete,
    instance_update,
    scope_apply,
    scope_from_input,
    tags_get_or_create,
)
from .licenses import license_instance_limit, license_upload
from .registration import (
    AGENT_AUTH_FIELDS,
    agent_authenticate,
    agent_credential_rotate,
    agent_register,
    registration_token_create,
    registration_token_revoke,
)
from .tags import tag_create, tag_delete, tag_rename, tag_selected_by

__all__ = [
    "tag_create",
    "tag_delete",
    "tag_rename",
    "tag_selected_by",
    "AGENT_AUTH_FIELDS",
    "CommandSpec",
    "agent_authenticate",
    "agent_commands_fetch",
    "agent_credential_rotate",
    "agent_register",
    "command_create",
    "command_create_many",
    "command_run_report",
    "command_run_revert",
    "command_runs_expire",
    "group_create",
    "group_delete",
    "group_update",
    "heartbeat_digest",
    "heartbeat_record",
    "heartbeat_touch",
    "instance_delete",
    "instance_update",
    "instances_mark_offline",
    "license_instance_limit",
    "license_upload",
    "registration_token_create",
    "registration_token_revoke",
    "scope_apply",
    "scope_from_input",
    "tags_get_or_create",
]
