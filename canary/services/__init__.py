"""Every write of a canary deployment, by sub-domain. The HTML views, the API, the tasks and the admin call these.

- preflight: which instances a step reaches, probes, pre-flight checks (reads and HTTP only);
- creation: validation (every problem at once), overlap refusal, `canary_create`;
- transitions: phase changes, promote / rollback / pause / resume / approve;
- apply, rounds, advance: the scheduler's advance (waves, poll rounds, decisions);
- scheduling: due times and the tasks enqueued for them.
"""

from .advance import canary_advance
from .base import ACT_ROLE, FEATURE
from .creation import canary_create
from .preflight import CanaryPlan, canary_plan, probe_instances
from .scheduling import canary_run_finished, due_deployment_ids
from .transitions import canary_approve, canary_pause, canary_promote, canary_resume, canary_rollback

__all__ = [
    "ACT_ROLE",
    "FEATURE",
    "CanaryPlan",
    "canary_advance",
    "canary_approve",
    "canary_create",
    "canary_pause",
    "canary_plan",
    "canary_promote",
    "canary_resume",
    "canary_rollback",
    "canary_run_finished",
    "due_deployment_ids",
    "probe_instances",
]
