"""GitOps: repositories, the desired-configuration store, sync runs and conflicts."""

from django.conf import settings
from django.db import models
from django.urls import reverse

from .choices import (
    AuthMethod,
    ConflictStatus,
    ConflictStrategy,
    HostKeyScan,
    Level,
    RepositoryStatus,
    Resolution,
    SyncStatus,
)


class Repository(models.Model):
    """A Git repository the panel pulls fleet configuration from, read-only, over SSH.

    The private key is stored only as MultiFernet ciphertext (`gitops.crypto`) and never leaves
    the model through the API, the pages or the admin. The host key is pinned: a sync connects only
    when the server presents exactly `host_key`.
    """

    name = models.CharField(max_length=100, unique=True)
    url = models.CharField(max_length=500, help_text="ssh://user@host:port/path or git@host:path")
    branch = models.CharField(max_length=255, default="main")
    # A sub-directory of the repository holding the layout ("" = the top level).
    path = models.CharField(max_length=255, blank=True, help_text="Sub-directory to read, e.g. clusters/prod")
    # Pinned revision: a tag or a commit SHA; "" follows the branch head.
    revision = models.CharField(
        max_length=255, blank=True, help_text="Tag or commit to stay on; empty follows the branch"
    )
    prune = models.BooleanField(default=False, help_text="Unset on instances the setting keys removed from Git")
    sync_interval = models.PositiveIntegerField(default=300, help_text="Seconds between syncs")
    conflict_strategy = models.CharField(
        max_length=16, choices=ConflictStrategy.choices, default=ConflictStrategy.MANUAL
    )
    auth_method = models.CharField(max_length=16, choices=AuthMethod.choices, default=AuthMethod.GENERATED)
    private_key_encrypted = models.TextField(editable=False)
    public_key = models.TextField(editable=False, help_text="OpenSSH public key, for use as a deploy key")
    # Pinned host key: "<type> <base64>"; empty until an admin confirms one.
    host_key = models.TextField(blank=True, editable=False)
    host_key_fingerprint = models.CharField(max_length=100, blank=True, editable=False)
    # A host key fetched from the server, waiting for an admin to confirm its fingerprint.
    pending_host_key = models.TextField(blank=True, editable=False)
    pending_host_key_fingerprint = models.CharField(max_length=100, blank=True, editable=False)
    # The worker's host key fetch: its state, and the fingerprint the admin said to expect.
    host_key_scan = models.CharField(max_length=16, choices=HostKeyScan.choices, default=HostKeyScan.IDLE)
    host_key_scan_error = models.CharField(max_length=500, blank=True)
    expected_host_key_fingerprint = models.CharField(max_length=100, blank=True, editable=False)
    # Push webhooks: the per-repository secret, MultiFernet ciphertext ("" = webhooks refused).
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)

    status = models.CharField(
        max_length=20, choices=RepositoryStatus.choices, default=RepositoryStatus.AWAITING_HOST_KEY
    )
    last_commit_sha = models.CharField(max_length=64, blank=True, help_text="Last commit applied")
    # The branch head seen by the last sync (differs from last_commit_sha while a commit is invalid/paused).
    head_sha = models.CharField(max_length=64, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_sync_at = models.DateTimeField(null=True, blank=True, db_index=True)
    failure_count = models.PositiveIntegerField(default=0)
    # Claimed by a sync (conditional UPDATE); a claim older than the task time limit is stale.
    sync_started_at = models.DateTimeField(null=True, blank=True)

    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("gitops:detail", args=[self.pk])

    @property
    def host_key_confirmed(self) -> bool:
        return bool(self.host_key)

    @property
    def webhook_enabled(self) -> bool:
        return bool(self.webhook_secret_encrypted)


class DesiredEntry(models.Model):
    """One key of the desired configuration at one level: `ssh.password_auth` = false for group "web".

    Keys are setting names (`ssh.password_auth`) or `app:<name>` for desired apps, whose value is a
    version or "absent". `present=False` is a tombstone: the panel removed a key Git had set, kept so
    that the removal is seen as drift against `git_base`.

    `git_base`/`in_git` record the value last synced from Git (the base of the three-way merge);
    `panel_changed_at` when the panel last changed the value.

    Ownership: an entry Git manages belongs to exactly one `repository` (`in_git` ⇔ `repository` set);
    a sync reads and writes only its own entries. `git_path`/`git_line` say where in that repository
    the key is defined. `override_accepted`: an admin resolved a conflict by keeping a value other than
    Git's; the manual strategy keeps it until Git changes the key again or the panel edits it.
    """

    level = models.CharField(max_length=16, choices=Level.choices)
    # "" for fleet, the group name, the "key=value" tag, or the instance name.
    target = models.CharField(max_length=200, blank=True)
    key = models.CharField(max_length=200)
    value = models.JSONField(null=True, blank=True)
    present = models.BooleanField(default=True)
    in_git = models.BooleanField(default=False)
    git_base = models.JSONField(null=True, blank=True)
    repository = models.ForeignKey(Repository, null=True, blank=True, on_delete=models.SET_NULL, related_name="entries")
    git_synced_at = models.DateTimeField(null=True, blank=True)
    git_path = models.CharField(max_length=500, blank=True)
    git_line = models.PositiveIntegerField(null=True, blank=True)
    override_accepted = models.BooleanField(default=False)
    panel_changed_at = models.DateTimeField(null=True, blank=True)
    panel_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["level", "target", "key"]
        verbose_name_plural = "desired configuration entries"
        constraints = [models.UniqueConstraint(fields=["level", "target", "key"], name="gitops_entry_unique_key")]

    def __str__(self):
        where = self.level if self.level == Level.FLEET else f"{self.level} {self.target}"
        return f"{where}: {self.key}"

    @property
    def drifted(self) -> bool:
        """Git manages this key and the panel's value differs from what Git last said."""
        same = type(self.value) is type(self.git_base) and self.value == self.git_base  # True is not 1
        return self.in_git and (not self.present or not same)


class SyncRun(models.Model):
    """One sync of one repository: what commit, what changed, which commands were queued, what failed."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.RUNNING, db_index=True)
    trigger = models.CharField(max_length=32, default="schedule")
    commit_sha = models.CharField(max_length=64, blank=True)
    # What was asked for when it was not the branch head: a pinned tag/commit or "sync to revision".
    revision = models.CharField(max_length=255, blank=True)
    # A preview: everything a sync does except applying (status "preview" when it got that far).
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # [{"level", "target", "key", "action", "effect", "before", "after"}]
    changes = models.JSONField(default=list, blank=True)
    # [{"command_id", "kind", "params", "instances"}]
    commands = models.JSONField(default=list, blank=True)
    commands_issued = models.PositiveIntegerField(default=0)
    # The policies/ section: [{"policy", "action" (created | changed | disabled), "file", "fields"}]
    policy_changes = models.JSONField(default=list, blank=True)
    conflicts_opened = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    log = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.repository} sync #{self.pk} ({self.status})"

    def get_absolute_url(self):
        return reverse("gitops:run_detail", args=[self.pk])

    @property
    def duration(self):
        if self.finished_at and self.started_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Conflict(models.Model):
    """Git and the panel both changed a key to different values under the manual strategy."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="conflicts")
    run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="conflicts")
    level = models.CharField(max_length=16, choices=Level.choices)
    target = models.CharField(max_length=200, blank=True)
    key = models.CharField(max_length=200)
    base_present = models.BooleanField(default=False)
    base_value = models.JSONField(null=True, blank=True)
    panel_present = models.BooleanField(default=True)
    panel_value = models.JSONField(null=True, blank=True)
    git_present = models.BooleanField(default=True)
    git_value = models.JSONField(null=True, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=ConflictStatus.choices, default=ConflictStatus.OPEN, db_index=True)
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True)
    resolved_value = models.JSONField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # How it was closed, in words: "kept the panel value (alice)", "closed when the strategy changed to
    # git_wins by alice". Readable after the user is gone, as audit entries are.
    outcome = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "level", "target", "key"],
                condition=models.Q(status="open"),
                name="gitops_one_open_conflict_per_key",
            )
        ]

    def __str__(self):
        where = self.level if self.level == Level.FLEET else f"{self.level} {self.target}"
        return f"Conflict on {where}: {self.key}"

    @property
    def scope_label(self) -> str:
        return "Fleet" if self.level == Level.FLEET else f"{Level(self.level).label} {self.target}"
