from django.db import models


class AttemptOutcome(models.TextChoices):
    """Where one remediation attempt stands. pending: its command (or canary) has not finished."""

    PENDING = "pending", "Queued"
    COMPLETED = "completed", "Command completed"
    FIXED = "fixed", "Fixed (violation resolved)"
    FAILED = "failed", "Failed"
    ROLLED_BACK = "rolled_back", "Rolled back by its canary"


FINISHED_OUTCOMES = (AttemptOutcome.COMPLETED, AttemptOutcome.FIXED, AttemptOutcome.FAILED, AttemptOutcome.ROLLED_BACK)
FAILED_OUTCOMES = (AttemptOutcome.FAILED, AttemptOutcome.ROLLED_BACK)
