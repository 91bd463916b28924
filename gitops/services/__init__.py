"""Every GitOps write, by sub-domain:

- `repositories`: connecting, settings, host keys, webhook secrets, disconnecting, sync requests;
- `sync`: syncing and previewing one repository; `sections`: the parts of a repository a sync reads;
- `store`: the desired-configuration store and the commands that drive the fleet;
- `conflicts`: an admin's decisions under the manual strategy;
- `webhooks`: push webhooks of GitHub, GitLab and Gitea.
"""

from ._base import FEATURE, mirror_path
from .conflicts import conflict_resolve
from .repositories import (
    repositories_due,
    repositories_rotate_keys,
    repository_connect,
    repository_delete,
    repository_host_key_confirm,
    repository_host_key_fetch,
    repository_host_key_scan,
    repository_is_busy,
    repository_preview_request,
    repository_private_key,
    repository_sync_request,
    repository_sync_to_revision,
    repository_update,
    repository_webhook_secret_rotate,
)
from .store import (
    PlanningQueued,
    desired_config_drive,
    desired_entry_delete,
    desired_entry_drive,
    desired_entry_set,
    fleet_plan,
    instance_reconcile,
)
from .sync import repository_preview, repository_sync
from .webhooks import WebhookForbidden, webhook_receive

__all__ = [
    "PlanningQueued",
    "FEATURE",
    "WebhookForbidden",
    "conflict_resolve",
    "desired_config_drive",
    "desired_entry_delete",
    "desired_entry_drive",
    "desired_entry_set",
    "fleet_plan",
    "instance_reconcile",
    "mirror_path",
    "repositories_due",
    "repositories_rotate_keys",
    "repository_connect",
    "repository_delete",
    "repository_host_key_confirm",
    "repository_host_key_fetch",
    "repository_host_key_scan",
    "repository_is_busy",
    "repository_preview",
    "repository_preview_request",
    "repository_private_key",
    "repository_sync",
    "repository_sync_request",
    "repository_sync_to_revision",
    "repository_update",
    "repository_webhook_secret_rotate",
    "webhook_receive",
]
