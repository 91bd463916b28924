"""What every part of the canary services shares: the license feature, run statuses, settings read once."""

from django.conf import settings

from common.choices import Role
from fleet.choices import RunStatus

FEATURE = "canary_deployments"
# Who may act on a deployment (create, promote, roll back, approve, pause, resume): the HTML views and the
# API check it, and an approval wait notifies everyone holding it.
ACT_ROLE = Role.OPERATOR
FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED)


def configured_probe_timeout() -> float:
    return float(getattr(settings, "CANARY_PROBE_TIMEOUT", 2.0))


def recheck_seconds(deployment) -> int:
    """How soon to look again at command runs when no run-finished signal came (the safety net)."""
    return max(1, min(int(getattr(settings, "CANARY_RECHECK_SECONDS", 5)), deployment.check_interval_seconds))


def verify_rounds() -> int:
    return int(getattr(settings, "CANARY_VERIFY_ROUNDS", 3))
