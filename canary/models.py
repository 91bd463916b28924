"""Canary deployments: a change sent to a few instances first, watched, then rolled out or rolled back."""

from django.conf import settings
from django.db import models
from django.urls import reverse

from fleet.models import Command, CommandRun, Instance, ScopedModel

from .choices import (
    ACTIVE_PHASES,
    Criterion,
    ExclusionKind,
    MissingAppPolicy,
    Phase,
    PollPurpose,
    PreflightPolicy,
    RoundMode,
    SelectionKind,
    TargetRole,
)


class CanaryDeployment(ScopedModel):
    """One change deployed step by step over a scope. The phase lives here, so a restarted worker resumes.

    Phases: canary (a step's change being applied) → evaluation (that step judged) → canary (next step)
    … → rollout (the rest of the scope, watched) → succeeded | failed, or → rollback → rolled_back |
    failed from any of them. Every phase change is a conditional UPDATE on `phase`
    (canary.services.transitions.transition); `paused` and `awaiting_approval` are flags beside it.
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
    missing_app_policy = models.CharField(
        max_length=16, choices=MissingAppPolicy.choices, default=MissingAppPolicy.EXCLUDE
    )
    # Progressive delivery: [{"percentage": 25, "approval": false} | {"instances": [ids], "approval": …}].
    # Empty: the canary selection above, then the rest of the scope (canary.evaluation.stages).
    steps = models.JSONField(default=list, blank=True)
    max_unavailable = models.PositiveIntegerField(
        null=True, blank=True, help_text="At most this many instances changing at once (empty: no limit)"
    )
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
    current_step = models.PositiveSmallIntegerField(default=1, help_text="1-based, over evaluation.stages(steps)")
    step_started_at = models.DateTimeField(null=True, blank=True)
    step_applied_at = models.DateTimeField(null=True, blank=True, help_text="every run of the current step finished")
    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True)
    awaiting_approval = models.BooleanField(default=False)
    # Due-time columns: next_poll_at is the earliest thing due (scanned by the beat safety net and the
    # target of each enqueued task); next_round_at is the next round on the grid (canary.timing).
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    next_round_at = models.DateTimeField(null=True, blank=True)
    poll_round = models.PositiveIntegerField(default=0, help_text="the last round claimed")
    rounds_recorded = models.PositiveIntegerField(default=0)
    round_claimed_at = models.DateTimeField(null=True, blank=True)
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

    @property
    def stages(self):
        """The steps as they run (canary.evaluation.stages): the last one is the rollout to the rest."""
        from .evaluation import Step, stages

        if self.steps:
            return stages([Step.from_dict(s) for s in self.steps])
        first = (
            Step(percentage=self.canary_percentage)
            if self.selection == SelectionKind.PERCENTAGE
            else Step(instances=tuple(self.canary_requested.values_list("pk", flat=True)))
        )
        return stages([first])

    @property
    def probe_timeout(self) -> float:
        from .timing import probe_timeout

        return probe_timeout(self.check_interval_seconds, getattr(settings, "CANARY_PROBE_TIMEOUT", 2.0))


class CanaryTarget(models.Model):
    """One instance of a deployment: reached by a step, or excluded (passed over by a pre-flight, lacks the app).

    Its health history is in HealthPoll (the latest poll carries the consecutive count).
    """

    deployment = models.ForeignKey(CanaryDeployment, on_delete=models.CASCADE, related_name="targets")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16, choices=TargetRole.choices)
    step = models.PositiveSmallIntegerField(null=True, blank=True, help_text="the step that reached it")
    excluded = models.BooleanField(default=False)
    exclusion_kind = models.CharField(max_length=16, choices=ExclusionKind.choices, blank=True)
    exclusion_reason = models.CharField(max_length=300, blank=True)
    # False: already unhealthy before the change reached it in the rollout, so watched but not counted.
    judged = models.BooleanField(default=True)
    run = models.ForeignKey(CommandRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revert_command = models.ForeignKey(Command, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revert_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["step", "instance__name"]
        indexes = [models.Index(fields=["deployment", "step"], name="canarytarget_step")]
        constraints = [models.UniqueConstraint(fields=["deployment", "instance"], name="canarytarget_one_per_instance")]

    def __str__(self):
        return f"{self.instance} ({self.role}) in {self.deployment}"


class HealthPoll(models.Model):
    """One check of one instance in one round: what the endpoint said and whether the instance passed."""

    deployment = models.ForeignKey(CanaryDeployment, on_delete=models.CASCADE, related_name="polls")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=16, choices=PollPurpose.choices, default=PollPurpose.EVALUATION)
    round = models.PositiveIntegerField()
    step = models.PositiveSmallIntegerField(null=True, blank=True)
    polled_at = models.DateTimeField(db_index=True)
    url = models.CharField(max_length=400, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, help_text="why the probe got no 2xx answer")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # Met every chosen criterion in this round; `consecutive` counts such rounds in a row, this one included.
    healthy = models.BooleanField()
    consecutive = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=500, blank=True)
    failed_criteria = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["deployment", "purpose", "round", "instance_id"]
        indexes = [
            models.Index(fields=["deployment", "instance", "polled_at"], name="healthpoll_timeline"),
            models.Index(fields=["deployment", "purpose", "round"], name="healthpoll_round"),
        ]

    def __str__(self):
        return f"{self.instance} round {self.round}: {'healthy' if self.healthy else 'unhealthy'}"


class EvaluationRound(models.Model):
    """Summary of one poll round: the healthy share against the threshold (what the detail chart plots).

    `healthy` passed this round; `passing` also passed enough rounds in a row to count towards the threshold.
    `due_at` is the round's time on the grid and `started_at` when its probes began (the lateness).
    """

    deployment = models.ForeignKey(CanaryDeployment, on_delete=models.CASCADE, related_name="rounds")
    purpose = models.CharField(max_length=16, choices=PollPurpose.choices, default=PollPurpose.EVALUATION)
    number = models.PositiveIntegerField()
    step = models.PositiveSmallIntegerField(null=True, blank=True)
    mode = models.CharField(max_length=16, choices=RoundMode.choices, default=RoundMode.EVALUATE)
    due_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField()
    healthy = models.PositiveIntegerField(default=0)
    passing = models.PositiveIntegerField()
    healthy_share = models.FloatField()
    threshold_met = models.BooleanField()
    decision = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["deployment", "purpose", "number"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "purpose", "number"], name="evaluationround_unique_number")
        ]

    def __str__(self):
        return f"{self.deployment} round {self.number}: {self.healthy_share:.0f}%"
