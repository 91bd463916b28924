"""Every write of governance, by workflow: policies, waivers, snapshots, and the evaluation entry points.

The evaluation itself lives in governance.evaluation (specs → diff → store, chunk by chunk).
"""

from common.exceptions import ApplicationError, NotFoundError

from .evaluation import (
    evaluate_fleet,
    evaluate_instance,
    evaluate_instances,
    evaluate_pending,
    evaluate_policy_scope,
    evaluate_time_based,
    queue_instance_evaluation,
    recount_after_instance_delete,
    recount_due_policies,
)
from .policies import (
    policy_check_writable,
    policy_conflicts,
    policy_create,
    policy_delete,
    policy_disable,
    policy_enable,
    policy_get,
    policy_preview,
    policy_set_enabled,
    policy_update,
)
from .snapshots import compliance_snapshot_take, snapshot_day
from .waivers import exception_create, exception_revoke, exceptions_expire

__all__ = [
    "ApplicationError",
    "NotFoundError",
    "compliance_snapshot_take",
    "evaluate_fleet",
    "evaluate_instance",
    "evaluate_instances",
    "evaluate_pending",
    "evaluate_policy_scope",
    "evaluate_time_based",
    "exception_create",
    "exception_revoke",
    "exceptions_expire",
    "policy_check_writable",
    "policy_conflicts",
    "policy_create",
    "policy_delete",
    "policy_disable",
    "policy_enable",
    "policy_get",
    "policy_preview",
    "policy_set_enabled",
    "policy_update",
    "queue_instance_evaluation",
    "recount_after_instance_delete",
    "recount_due_policies",
    "snapshot_day",
]
