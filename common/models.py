from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from .choices import ROLE_RANK, NotificationLevel, Role


class User(AbstractUser):
    """A person using the panel. The role decides what they may change; everyone may read."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        ordering = ["username"]

    def save(self, *args, **kwargs):
        # Fleet admins use the Django admin (e.g. to resolve GitOps conflicts); nobody else may.
        self.is_staff = self.is_superuser or self.role == Role.ADMIN
        if kwargs.get("update_fields") is not None and "role" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "is_staff"}
        super().save(*args, **kwargs)

    def has_perm(self, perm, obj=None) -> bool:
        return self.is_active and (self.is_superuser or self.role == Role.ADMIN)

    def has_module_perms(self, app_label) -> bool:
        return self.is_active and (self.is_superuser or self.role == Role.ADMIN)

    def has_role(self, role: str) -> bool:
        if not self.is_active:
            return False
        if self.is_superuser:
            return True
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def is_fleet_admin(self) -> bool:
        return self.has_role(Role.ADMIN)


class AuditEntry(models.Model):
    """One state-changing action: who did what to which object, and when."""

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # "alice", "system", "agent:web-01", "admin:alice" — readable even after the user is gone.
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=80, db_index=True)
    object_type = models.CharField(max_length=80, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"{self.actor_label} {self.action} {self.object_repr}"


class Notification(models.Model):
    """An in-app message to one user; the same event may also be emailed."""

    created = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    level = models.CharField(max_length=16, choices=NotificationLevel.choices, default=NotificationLevel.INFO)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self):
        return self.title


class ApiToken(models.Model):
    """A user's REST API token, `gov_<key_id>_<secret>`. Only SHA-256(secret) is stored: the key is shown
    once when it is made and can never be shown again (regenerate a lost one)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token")
    key_id = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    # Refreshed at most once a minute, so authenticating a busy script rarely writes.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user__username"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.user} ({self.key_id})"


class ProcessHeartbeat(models.Model):
    """The last time a background process (a Celery worker, beat) was seen, one row per process node.

    Written by common.liveness every LIVENESS_INTERVAL seconds; read by the banner, /healthz and /metrics.
    """

    component = models.CharField(max_length=16)
    node = models.CharField(max_length=200, help_text="worker node name or beat host")
    pid = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["component", "node"], name="processheartbeat_unique_node")]

    def __str__(self):
        return f"{self.component} {self.node}"
