from django.db import models


class Phase(models.TextChoices):
    CANARY = "canary", "Canary"
    EVALUATION = "evaluation", "Evaluation"
    ROLLOUT = "rollout", "Rollout"
    ROLLBACK = "rollback", "Rollback"
    SUCCEEDED = "succeeded", "Succeeded"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"


ACTIVE_PHASES = (Phase.CANARY, Phase.EVALUATION, Phase.ROLLOUT, Phase.ROLLBACK)
TERMINAL_PHASES = (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)


class Criterion(models.TextChoices):
    ONLINE = "online", "Instance remains online"
    NO_NEW_VIOLATIONS = "no_new_violations", "No new violations"
    HEALTH_CHECK = "health_check", "Health check passes"


class SelectionKind(models.TextChoices):
    PERCENTAGE = "percentage", "A percentage of the scope"
    INSTANCES = "instances", "Named instances"


class PreflightPolicy(models.TextChoices):
    EXCLUDE = "exclude", "Exclude unhealthy or offline canary candidates (listed with the reason)"
    BLOCK = "block", "Block the start if any canary candidate is unhealthy or offline"


class MissingAppPolicy(models.TextChoices):
    EXCLUDE = "exclude", "Exclude instances that lack the app (listed, they never get the change)"
    REFUSE = "refuse", "Refuse the start if any instance in scope lacks the app"


class TargetRole(models.TextChoices):
    CANARY = "canary", "Canary"
    STEP = "step", "Later step"
    ROLLOUT = "rollout", "Rollout"


class ExclusionKind(models.TextChoices):
    PREFLIGHT = "preflight", "Passed over by the pre-flight"
    MISSING_APP = "missing_app", "Lacks the app to change"


class PollPurpose(models.TextChoices):
    PREFLIGHT = "preflight", "Pre-flight"
    EVALUATION = "evaluation", "Evaluation"
    VERIFICATION = "verification", "Rollback verification"


class RoundMode(models.TextChoices):
    EVALUATE = "evaluate", "Evaluating a step"
    WATCH = "watch", "Watching the instances the change reached"
    OBSERVE = "observe", "Observing (forced promotion: no automatic decision)"
    VERIFY = "verify", "Verifying the rollback"
