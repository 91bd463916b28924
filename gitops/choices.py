from django.db import models


class ConflictStrategy(models.TextChoices):
    SERVER_WINS = "server_wins", "Server wins (panel values override Git)"
    GIT_WINS = "git_wins", "Git wins (repository values override the panel)"
    MANUAL = "manual", "Manual (pause and ask an admin)"


class AuthMethod(models.TextChoices):
    GENERATED = "generated", "Key pair generated in the panel (deploy key)"
    UPLOADED = "uploaded", "Uploaded private key"


class RepositoryStatus(models.TextChoices):
    AWAITING_HOST_KEY = "awaiting_host_key", "Awaiting host key confirmation"
    NEVER_SYNCED = "never_synced", "Not synced yet"
    OK = "ok", "In sync"
    INVALID = "invalid", "Last commit invalid"
    PAUSED = "paused", "Paused: conflicts to resolve"
    ERROR = "error", "Remote unreachable / refused"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    APPLIED = "applied", "Applied"
    PREVIEW = "preview", "Previewed (nothing applied)"
    NOOP = "noop", "Unchanged"
    INVALID = "invalid", "Invalid commit"
    PAUSED = "paused", "Paused on conflicts"
    FAILED = "failed", "Failed"


class Level(models.TextChoices):
    """Where a desired-configuration entry applies. Precedence: instance > tag > group > fleet."""

    FLEET = "fleet", "Fleet"
    GROUP = "group", "Group"
    TAG = "tag", "Tag"
    INSTANCE = "instance", "Instance"


# Higher wins when several levels set the same key for one instance.
LEVEL_RANK = {Level.FLEET: 0, Level.GROUP: 1, Level.TAG: 2, Level.INSTANCE: 3}


class ConflictStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"  # an admin chose a value (`resolution`)
    SUPERSEDED = "superseded", "Superseded"  # closed undecided: the strategy left manual (`outcome` says so)


class Resolution(models.TextChoices):
    PANEL = "panel", "Keep the panel value"
    GIT = "git", "Take the Git value"
    CUSTOM = "custom", "Use another value"


class HostKeyScan(models.TextChoices):
    """The worker's fetch of a server's host key (the web process never connects to Git hosts)."""

    IDLE = "idle", "Not running"
    PENDING = "pending", "Fetching the host key"
    READY = "ready", "Fetched: waiting for confirmation"
    FAILED = "failed", "Could not reach the server"


class DisconnectMode(models.TextChoices):
    KEEP = "keep", "Keep its entries as panel-owned"
    REMOVE = "remove", "Remove its entries"


class Forge(models.TextChoices):
    GITHUB = "github", "GitHub"
    GITLAB = "gitlab", "GitLab"
    GITEA = "gitea", "Gitea"
