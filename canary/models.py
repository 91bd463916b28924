"""Canary deployments: a change sent to a few instances first, watched, then rolled out or rolled back."""

from django.conf import settings
from django.db import models
from django.urls import reverse

from fleet.models import Command, CommandRun, Instance, ScopedModel

from .choices import ACTIVE_PHASES, Criterion, Phase, PollPurpose, PreflightPolicy, SelectionKind, TargetRole


class CanaryDeployment(ScopedModel):
    """One change deployed canary-first over a scope. The phase lives here, so a restarted worker resumes.

    Phases: canary → evaluation → rollout | rollback → succeeded | rolled_back | failed. Every phase
    change is a conditional UPDATE on `phase` (see services._transition).
    """

    name = models.CharField(max_length=120, blank=True)
    # The change: a command of the queue.
    command_kind = models.CharField(max_length=32)
    command_params = models.JSONField(default=dict, blank=True)
    # Which instances are the canary.
    selection = models.CharField(max_length=16, choices=SelectionKind.choices, default=SelectionKind.PERCENTAGE)
    canary_percentage = models.PositiveSmallIntegerField(null=True, blank=True)
    canary_requested = models.ManyToManyField(Instance, related_name="+", blank=True)
    # Success criteria and parameters.
    criteria = models.JSONField(default=list, help_text=f"any of {', '.join(Criterion.values)}")
    success_threshold = models.PositiveSmallIntegerField(default=100)
    health_path = models.CharField(max_length=200, default="/health")
    check_interval_seconds = models.PositiveIntegerField(default=30)
    max_duration_seconds = models.PositiveIntegerField(default=600)
    consecutive_healthy = models.PositiveSmallIntegerField(default=1)
    preflight_policy = models.CharField(max_length=16, choices=PreflightPolicy.choices, default=PreflightPolicy.EXCLUDE)
    # State.
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.CANARY, db_index=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="started_at + max duration")
    evaluation_started_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Due-time column scanned by the beat task (canary.tasks.advance_due_deployments).
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    poll_round = models.PositiveIntegerField(default=0)
    verification_round = models.PositiveIntegerField(default=0)
    forced = models.BooleanField(default=False, help_text="Promoted or rolled back by a person, not by the evaluation")
    failure_reason = models.TextField(blank=True)
    # {instance name: ["health_check: HTTP 500", ...]} for the criteria that failed, per instance.
    failure_details = models.JSONField(default=dict, blank=True)
    rollback_verified = models.BooleanField(null=True, blank=True)
    rollback_note = models.TextField(blank=True)
    # Open-violation keys per instance at the start of the canary phase ({"<id>": [keys]}).
    violations_baseline = models.JSONField(default=dict, blank=True)
    canary_command = models.ForeignKey(Command, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rollout_command = models.ForeignKey(Command, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["phase", "next_poll_at"], name="canary_phase_due")]

    def __str__(self):
        return self.name or f"Canary #{self.pk}"

    def get_absolute_url(self):
        return reverse("canary:detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def change_label(self) -> str:
        from fleet.commands import describe

        try:
            return describe(self.command_kind, self.command_params)
        except (KeyError, TypeError):
            return self.command_kind

    @property
    def criteria_labels(self) -> list[str]:
        return [Criterion(c).label for c in self.criteria if c in Criterion.values]


class CanaryTarget(models.Model):
    """One instance of a deployment: a canary (possibly excluded by pre-flight) or a rollout target."""

    deployment = models.ForeignKey(CanaryDeployment, on_delete=models.CASCADE, related_name="targets")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16, choices=TargetRole.choices)
    excluded = models.BooleanField(default=False)
    exclusion_reason = models.CharField(max_length=300, blank=True)
    run = models.ForeignKey(CommandRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revert_command = models.ForeignKey(Command, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revert_note = models.CharField(max_length=300, blank=True)
    consecutive_healthy = models.PositiveIntegerField(default=0)
    last_passed = models.BooleanField(null=True, blank=True)
    last_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["role", "instance__name"]
        constraints = [models.UniqueConstraint(fields=["deployment", "instance"], name="canarytarget_one_per_instance")]

    def __str__(self):
        return f"{self.instance} ({self.role}) in {self.deployment}"


class HealthPoll(models.Model):
    """One check of one canary instance in one round: what the endpoint said and whether it counted as healthy."""

    deployment = models.ForeignKey(CanaryDeployment, on_delete=models.CASCADE, related_name="polls")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=16, choices=PollPurpose.choices, default=PollPurpose.EVALUATION)
    round = models.PositiveIntegerField()
    polled_at = models.DateTimeField(db_index=True)
    url = models.CharField(max_length=400, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # Met every chosen criterion in this round.
    healthy = models.BooleanField()
    reason = models.CharField(max_length=500, blank=True)
    failed_criteria = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["deployment", "purpose", "round", "instance_id"]
        indexes = [models.Index(fields=["deployment", "instance", "polled_at"], name="healthpoll_timeline")]

    def __str__(self):
        return f"{self.instance} round {self.round}: {'healthy' if self.healthy else 'unhealthy'}"


class EvaluationRound(models.Model):
    """Summary of one poll round: the healthy share against the threshold (what the detail chart plots)."""

    deployment = models.ForeignKey(CanaryDeployment, on_delete=models.CASCADE, related_name="rounds")
    purpose = models.CharField(max_length=16, choices=PollPurpose.choices, default=PollPurpose.EVALUATION)
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField()
    passing = models.PositiveIntegerField()
    healthy_share = models.FloatField()
    threshold_met = models.BooleanField()

    class Meta:
        ordering = ["deployment", "purpose", "number"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "purpose", "number"], name="evaluationround_unique_number")
        ]

    def __str__(self):
        return f"{self.deployment} round {self.number}: {self.healthy_share:.0f}%"
