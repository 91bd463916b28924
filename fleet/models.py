from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from .choices import CommandSource, CommandType, InstanceStatus, RunStatus, ScopeKind
from .scopes import Scope


class Group(models.Model):
    """A named set of instances (e.g. "web", "databases"). An instance may be in several."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("fleet:group_detail", args=[self.pk])


class Tag(models.Model):
    """A `key=value` label such as `env=production`."""

    key = models.CharField(max_length=64)
    value = models.CharField(max_length=128)

    class Meta:
        ordering = ["key", "value"]
        constraints = [models.UniqueConstraint(fields=["key", "value"], name="tag_unique_key_value")]

    def __str__(self):
        return f"{self.key}={self.value}"


class Instance(models.Model):
    """A server in the fleet, running an agent. Its state is what the agent last reported."""

    name = models.CharField(max_length=100, unique=True)
    hostname = models.CharField(max_length=255, blank=True)
    # host:port the panel uses to reach the instance's health endpoint (e.g. "10.0.0.5:8080").
    address = models.CharField(max_length=255, blank=True)
    os_version = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=InstanceStatus.choices, default=InstanceStatus.PENDING, db_index=True
    )
    # Not indexed: every heartbeat writes it, and without an index that write is a HOT update (no index
    # maintenance; see docs/decisions.md). The offline sweep finds rows through the status index.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)
    groups = models.ManyToManyField(Group, related_name="instances", blank=True)
    tags = models.ManyToManyField(Tag, related_name="instances", blank=True)
    # Reported state. [{"name", "version", "running"}]
    apps = models.JSONField(default=list, blank=True)
    # {"ssh.password_auth": false, ...}
    settings = models.JSONField(default=dict, blank=True)
    # [{"kind": "os"|"app", "name": "os"|app name, "version", "released_at": ISO-8601}]
    updates = models.JSONField(default=list, blank=True)
    # Digests of the stored state and of its apps (fleet.services.heartbeats.state_digests). Only
    # heartbeat_record writes the state, so they always describe what is stored.
    state_hash = models.CharField(max_length=64, blank=True)
    apps_hash = models.CharField(max_length=64, blank=True)
    # The same apps as compact text for governance (fleet.app_index); NULL: read `apps` instead. Written
    # with `apps` by heartbeat_record; a trigger clears it when anything else rewrites `apps`.
    apps_text = models.TextField(null=True, blank=True, editable=False)
    # SHA-256 of the exact bytes of the last heartbeat body the full path validated and stored: a body
    # with the same digest repeats that state and agent version, so it needs no parsing (heartbeat_touch).
    heartbeat_digest = models.CharField(max_length=64, blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    # The agent credential is "<agent_key_id>.<secret>"; only a SHA-256 of the secret is stored.
    agent_key_id = models.CharField(max_length=16, unique=True, null=True, blank=True)
    agent_secret_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("fleet:server_detail", args=[self.pk])

    @property
    def state(self) -> dict:
        """The reported state in the shape pure logic (commands, evaluators) takes."""
        return {"os_version": self.os_version, "apps": self.apps, "settings": self.settings, "updates": self.updates}

    @property
    def health_base_url(self) -> str:
        return f"http://{self.address}" if self.address else ""


class ScopedModel(models.Model):
    """Mixin for anything targeted at part of the fleet: policies, commands, canaries, config entries."""

    scope_kind = models.CharField(max_length=16, choices=ScopeKind.choices, default=ScopeKind.ALL)
    scope_groups = models.ManyToManyField(Group, related_name="+", blank=True)
    scope_tags = models.JSONField(default=list, blank=True, help_text="key=value tags, all must match")
    scope_instances = models.ManyToManyField(Instance, related_name="+", blank=True)

    class Meta:
        abstract = True

    @property
    def scope(self) -> Scope:
        kind = self.scope_kind
        return Scope(
            kind=kind,
            group_ids=tuple(g.pk for g in self.scope_groups.all()) if kind == ScopeKind.GROUPS else (),
            tags=tuple(self.scope_tags) if kind == ScopeKind.TAGS else (),
            instance_ids=tuple(i.pk for i in self.scope_instances.all()) if kind == ScopeKind.INSTANCES else (),
        )

    @property
    def scope_label(self) -> str:
        kind = self.scope_kind
        if kind == ScopeKind.ALL:
            return "All instances"
        if kind == ScopeKind.GROUPS:
            return "Groups: " + ", ".join(g.name for g in self.scope_groups.all())
        if kind == ScopeKind.TAGS:
            return "Tags: " + " AND ".join(self.scope_tags)
        names = [i.name for i in self.scope_instances.all()]
        return "Instances: " + ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


class RegistrationToken(models.Model):
    """Lets agents register. The token is "reg_<key_id>_<secret>"; only a hash of the secret is stored."""

    name = models.CharField(max_length=100)
    key_id = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    max_uses = models.PositiveIntegerField(null=True, blank=True, help_text="Empty for unlimited; 1 for one-time")
    use_count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Groups and tags given to every instance that registers with this token.
    groups = models.ManyToManyField(Group, related_name="+", blank=True)
    tags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("fleet:token_detail", args=[self.pk])

    def invalid_reason(self, now, *, count_uses: bool = True) -> str | None:
        """Why this token can no longer be used, or None if it can. `count_uses=False`: for repeating a
        registration it already paid for (see fleet.services.agent_register)."""
        if self.revoked_at:
            return "This registration token was revoked."
        if self.expires_at and now >= self.expires_at:
            return "This registration token has expired."
        if count_uses and self.max_uses is not None and self.use_count >= self.max_uses:
            return "This registration token has reached its usage limit."
        return None

    @property
    def is_one_time(self) -> bool:
        return self.max_uses == 1

    @property
    def status(self) -> str:
        """revoked, expired, exhausted or active: what the token list shows."""
        if self.revoked_at:
            return "revoked"
        if self.expires_at and timezone.now() >= self.expires_at:
            return "expired"
        if self.max_uses is not None and self.use_count >= self.max_uses:
            return "exhausted"
        return "active"


class TokenUse(models.Model):
    """Usage history of a registration token: every registration attempt with it."""

    token = models.ForeignKey(RegistrationToken, on_delete=models.CASCADE, related_name="uses")
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    used_at = models.DateTimeField(auto_now_add=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    accepted = models.BooleanField(default=True)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-used_at", "-id"]

    def __str__(self):
        return f"{self.token} used {self.used_at:%Y-%m-%d %H:%M}"


class Command(ScopedModel):
    """An operation sent to part of the fleet; it becomes one CommandRun per targeted instance."""

    kind = models.CharField(max_length=32, choices=CommandType.choices)
    params = models.JSONField(default=dict, blank=True)
    description = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=16, choices=CommandSource.choices, default=CommandSource.MANUAL)
    timeout_seconds = models.PositiveIntegerField(default=900)
    inverse_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="inverses")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        from .commands import describe

        return describe(self.kind, self.params)

    def get_absolute_url(self):
        return reverse("fleet:command_detail", args=[self.pk])


class CommandRun(models.Model):
    """One command on one instance: pending → running → completed | failed. Never stuck: deadlines fail it."""

    command = models.ForeignKey(Command, on_delete=models.CASCADE, related_name="runs")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="command_runs")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    # What the instance looked like before, as far as this command is concerned (for the inverse).
    before_state = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The agent's first word about the run (progress or result): until then a delivery may have been lost
    # on the way, and the run is delivered again (command_queue.agent_commands_fetch).
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Pending past pickup_deadline, or running past finish_deadline, fails with the reason.
    pickup_deadline = models.DateTimeField()
    finish_deadline = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=200, blank=True)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["command", "instance"], name="commandrun_one_per_instance")]
        indexes = [
            models.Index(fields=["instance", "status"], name="run_instance_status"),
            models.Index(fields=["status", "pickup_deadline"], name="run_status_pickup"),
            models.Index(fields=["status", "finish_deadline"], name="run_status_finish"),
        ]

    def __str__(self):
        return f"{self.command} on {self.instance}"

    def get_absolute_url(self):
        return reverse("fleet:run_detail", args=[self.command_id, self.pk])

    def inverse(self) -> tuple[str, dict] | None:
        from .commands import inverse

        return inverse(self.command.kind, self.command.params, self.before_state)


class License(models.Model):
    """An uploaded license file. The newest one that verifies is in force."""

    text = models.TextField()
    plan = models.CharField(max_length=32)
    customer = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField()
    uploaded_at = models.DateTimeField(auto_now_add=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-uploaded_at", "-id"]

    def __str__(self):
        return f"{self.plan} license for {self.customer}"
