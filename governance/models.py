from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from fleet.models import Group, Instance, ScopedModel

from . import scores
from .choices import (
    SEVERITY_BY_TYPE,
    ExceptionStatus,
    PolicyMode,
    PolicyType,
    ReleaseOutcome,
    Severity,
    SnapshotKind,
    VersionSource,
    ViolationStatus,
)
from .evaluation import diff
from .remediation.choices import AttemptOutcome


class Policy(ScopedModel):
    """Expected state for part of the fleet: one type, its rules (canonical JSON, see evaluators) and a scope."""

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    policy_type = models.CharField(max_length=20, choices=PolicyType.choices)
    rules = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    mode = models.CharField(max_length=8, choices=PolicyMode.choices, default=PolicyMode.AUDIT)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Owned by a GitOps repository (policies/ in it): read-only in the panel; see docs/policies.md.
    git_repository = models.ForeignKey(
        "gitops.Repository", null=True, blank=True, on_delete=models.SET_NULL, related_name="policies"
    )
    git_path = models.CharField(max_length=500, blank=True)
    git_commit = models.CharField(max_length=64, blank=True, help_text="The commit that last changed it")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("governance:policy_detail", args=[self.pk])

    @property
    def severity(self) -> str:
        return SEVERITY_BY_TYPE[self.policy_type]


class Violation(models.Model):
    """One failed rule of one policy on one instance, from first detection until it is resolved.

    A violation that disappears is resolved (kept as history); if it comes back it is a new row.
    At most one current (open or exempted) row exists per policy, instance and rule.
    """

    # SET_NULL keeps history when a policy is deleted; policy_name keeps it readable.
    # No single-column indexes on policy and instance: the (policy, status) and (instance, status)
    # indexes below lead with them, and every index is written on each of a sweep's inserts.
    policy = models.ForeignKey(
        Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="violations", db_index=False
    )
    policy_name = models.CharField(max_length=120)
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="violations", db_index=False)
    rule_key = models.CharField(max_length=200)
    rule = models.CharField(max_length=300)
    evidence = models.TextField()
    severity = models.CharField(max_length=16, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=ViolationStatus.choices, default=ViolationStatus.OPEN)
    first_detected_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    exception = models.ForeignKey(
        "PolicyException", null=True, blank=True, on_delete=models.SET_NULL, related_name="violations"
    )

    class Meta:
        ordering = ["-first_detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "instance", "rule_key"],
                condition=~Q(status="resolved"),
                name="violation_one_current_per_rule",
            )
        ]
        indexes = [
            models.Index(fields=["status", "severity"], name="violation_status_severity"),
            models.Index(fields=["instance", "status"], name="violation_instance_status"),
            models.Index(fields=["policy", "status"], name="violation_policy_status"),
        ]

    def __str__(self):
        return f"{self.policy_name}: {self.evidence} on {self.instance_id}"

    @property
    def key(self) -> str:
        return f"{self.policy_id}:{self.rule_key}"


class PolicyException(ScopedModel):
    """A waiver: exempts an instance, group or tag scope from a policy (or one of its rules) until it expires."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="exceptions")
    # Empty: the whole policy. Otherwise one rule_key, e.g. "app:monitoring-agent".
    rule_key = models.CharField(max_length=200, blank=True)
    justification = models.TextField()
    expires_at = models.DateTimeField(db_index=True)
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set by the beat once the expiry has been acted on (violations re-opened), so it happens once.
    expiry_processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        what = f"{self.policy} / {self.rule_key}" if self.rule_key else str(self.policy)
        return f"Exception for {what}"

    def status_at(self, now) -> str:
        if self.revoked_at:
            return ExceptionStatus.REVOKED
        if self.expires_at <= now:
            return ExceptionStatus.EXPIRED
        return ExceptionStatus.ACTIVE


class InstanceCompliance(models.Model):
    """The current standing of one instance: its score and its state against each policy in scope."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, primary_key=True, related_name="compliance")
    met = models.PositiveIntegerField(default=0)
    applicable = models.PositiveIntegerField(default=0)
    exempt = models.PositiveIntegerField(default=0)
    # None when no policy applies (or the data is stale): excluded from every average.
    score = models.FloatField(null=True, blank=True, db_index=True)
    stale = models.BooleanField(default=False)
    # Every enabled policy whose scope includes the instance with its PolicyState code, as compact
    # text ("12c,13n,17u"): ten thousand of these are rewritten by a fleet sweep, and text is several
    # times cheaper for PostgreSQL to store than the same map as jsonb.
    states = models.TextField(blank=True, default="")
    # Set when the stored state could not be evaluated (why, in words); its policies then read "unknown".
    invalid_reason = models.TextField(blank=True, default="")
    evaluated_at = models.DateTimeField()

    class Meta:
        ordering = ["score", "instance_id"]

    def __str__(self):
        return f"{self.instance_id}: {self.score}"

    encode_states = staticmethod(diff.encode_states)
    decode_states = staticmethod(diff.decode_states)  # {str(policy_id): PolicyState code}

    @property
    def state_map(self) -> dict[str, str]:
        return self.decode_states(self.states)


class PolicyCompliance(models.Model):
    """How many instances in a policy's scope stand in each state: always recounted from the standings
    (InstanceCompliance.states), never moved by deltas (see evaluation.store.recount_policies)."""

    policy = models.OneToOneField(Policy, on_delete=models.CASCADE, primary_key=True, related_name="compliance")
    compliant = models.IntegerField(default=0)
    noncompliant = models.IntegerField(default=0)
    exempt = models.IntegerField(default=0)
    unknown = models.IntegerField(default=0)
    # A heartbeat's evaluation changed a standing this policy counts: recount soon (evaluation.store).
    recount_due = models.BooleanField(default=False)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.policy_id}: {self.compliant}/{self.applicable}"

    @property
    def applicable(self) -> int:
        return self.compliant + self.noncompliant

    @property
    def score(self) -> float | None:
        return scores.display(100 * self.compliant / self.applicable) if self.applicable else None


class PendingEvaluation(models.Model):
    """An instance whose state changed and whose evaluation is queued; workers claim these in batches
    (governance.evaluation.pending)."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, primary_key=True, related_name="+")
    queued_at = models.DateTimeField()

    def __str__(self):
        return f"evaluation of {self.instance_id} queued at {self.queued_at}"


class ReleaseRecord(models.Model):
    """A release offered to an instance, from when it was first pending until it was applied.

    This is what makes the update deadline clock start at the oldest pending release, and what the
    "applied within the deadline over the last 30 days" figure is computed from.
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8)  # "os" | "app"
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=64)
    released_at = models.DateTimeField()
    first_seen_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=ReleaseOutcome.choices, default=ReleaseOutcome.PENDING, blank=True
    )

    class Meta:
        ordering = ["-released_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "kind", "name", "version"],
                condition=Q(closed_at__isnull=True),
                name="release_one_open_per_version",
            )
        ]
        indexes = [
            models.Index(fields=["instance", "closed_at"], name="release_instance_open"),
            models.Index(fields=["released_at"], name="release_released_at"),
        ]

    def __str__(self):
        return f"{self.kind} {self.name} {self.version} on {self.instance_id}"


class ComplianceSnapshot(models.Model):
    """A daily score: of the fleet, of one group, or of one policy."""

    date = models.DateField(db_index=True)
    kind = models.CharField(max_length=8, choices=SnapshotKind.choices)
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    label = models.CharField(max_length=120, blank=True)
    score = models.FloatField(null=True, blank=True)
    instances = models.PositiveIntegerField(default=0)  # instances that counted
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["date", "kind", "label"]
        indexes = [models.Index(fields=["kind", "date"], name="snapshot_kind_date")]

    def __str__(self):
        return f"{self.date} {self.kind} {self.label}: {self.score}"


class InstanceSnapshot(models.Model):
    """One instance's standing on one day: answers "was instance X compliant on date D"."""

    date = models.DateField()
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(null=True, blank=True)
    met = models.PositiveIntegerField(default=0)
    applicable = models.PositiveIntegerField(default=0)
    stale = models.BooleanField(default=False)
    failing_policy_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-date"]
        constraints = [models.UniqueConstraint(fields=["instance", "date"], name="instance_snapshot_one_per_day")]

    def __str__(self):
        return f"{self.date} {self.instance_id}: {self.score}"

    @property
    def compliant(self) -> bool | None:
        if self.stale or not self.applicable:
            return None
        return self.met == self.applicable


# --- Policies as code: versions (#16) -----------------------------------------------------------


class PolicyVersion(models.Model):
    """One change of a policy: its whole policy-file document after the change, who made it and from where.

    Kept when the policy is deleted (policy set to NULL, `policy_name` keeps it readable; the last
    version then has `change` "deleted"). Numbered 1, 2, … per policy."""

    policy = models.ForeignKey(Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions")
    policy_name = models.CharField(max_length=120)
    number = models.PositiveIntegerField()
    change = models.CharField(max_length=16)  # created | changed | enabled | disabled | deleted
    # The policy as a policy file has it (governance.policyfiles.document): name, type, rules, scope…
    snapshot = models.JSONField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=8, choices=VersionSource.choices)
    repository_name = models.CharField(max_length=100, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    git_path = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["policy", "number"], name="policy_version_unique_number")]

    def __str__(self):
        return f"{self.policy_name} v{self.number}"


# --- Remediation (enforce mode, #16; governance/remediation/) -----------------------------------


class RemediationSettings(models.Model):
    """The safety rails of one policy's enforce mode. Absent: the defaults below (RemediationSettings())."""

    policy = models.OneToOneField(Policy, on_delete=models.CASCADE, primary_key=True, related_name="remediation")
    # Rate budget: at most N instances / P % of the scope with a fix in flight, at most M started per hour.
    max_instances = models.PositiveIntegerField(null=True, blank=True, default=5)
    max_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    max_per_hour = models.PositiveIntegerField(null=True, blank=True, default=20)
    # Maintenance window: weekdays (0 = Monday; empty = every day) and hours (empty = all day), in a zone.
    window_days = models.JSONField(default=list, blank=True)
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    window_timezone = models.CharField(max_length=64, default="UTC")
    # Attempts: at most K per violation; after a failure wait backoff × 2^(n-1).
    max_attempts = models.PositiveSmallIntegerField(default=3)
    backoff_seconds = models.PositiveIntegerField(default=300)
    # Circuit breaker: more than X % of the attempts finished in the last hour failed (of at least
    # breaker_min_attempts) pauses the policy's remediation and notifies the admins.
    breaker_percent = models.PositiveSmallIntegerField(default=50)
    breaker_min_attempts = models.PositiveSmallIntegerField(default=3)
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)  # the breaker counts attempts finished after it
    # Through a canary deployment (canary.services.canary_create) instead of straight to every instance.
    use_canary = models.BooleanField(default=False)
    canary_percentage = models.PositiveSmallIntegerField(default=20)
    canary_criteria = models.JSONField(default=list, blank=True)  # empty: online + health check
    canary_check_interval = models.PositiveIntegerField(default=30)
    canary_max_duration = models.PositiveIntegerField(default=600)
    # The tick's lease: claimed by a conditional UPDATE, so one worker at a time spends the budget.
    tick_claimed_until = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Remediation of {self.policy_id}"


class RemediationAttempt(models.Model):
    """One try at fixing one violation: the command queued (or the canary deployment it went through),
    its run on the instance, and how it ended. Numbered 1..K per violation; (violation, number) is unique,
    so two workers can never record the same attempt twice."""

    violation = models.ForeignKey(Violation, on_delete=models.CASCADE, related_name="remediation_attempts")
    policy = models.ForeignKey(Policy, null=True, on_delete=models.SET_NULL, related_name="remediation_attempts")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    number = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=32)
    params = models.JSONField(default=dict)
    outcome = models.CharField(
        max_length=16, choices=AttemptOutcome.choices, default=AttemptOutcome.PENDING, db_index=True
    )
    command = models.ForeignKey("fleet.Command", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey("fleet.CommandRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A plain id, not a foreign key: canary already depends on governance, and models must not cycle.
    canary_deployment_id = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["violation", "number"], name="remediation_attempt_one_per_number")
        ]
        indexes = [models.Index(fields=["policy", "outcome"], name="remediation_policy_outcome")]

    def __str__(self):
        return f"Attempt {self.number} on violation {self.violation_id}: {self.outcome}"


class ComplianceDigest(models.Model):
    """One weekly e-mail digest: its week (the Monday) is unique, so it goes out once per week however often
    the beat asks (governance/reports/digest.py)."""

    week = models.DateField(unique=True)
    created = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-week"]

    def __str__(self):
        return f"Digest of the week of {self.week}"
