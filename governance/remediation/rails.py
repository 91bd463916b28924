"""The admin's side of enforce mode: the policy's mode and safety rails, validated all at once, and resuming
after the circuit breaker paused it. Called by the API, the HTML form and tests alike."""

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.utils import timezone

from common.exceptions import ConflictError, ErrorCollector
from common.services import audit_log

from ..choices import PolicyMode, VersionSource
from ..models import Policy, RemediationSettings

# field: (smallest, largest, may be empty)
NUMBERS = {
    "max_instances": (1, 100_000, True),
    "max_percent": (1, 100, True),
    "max_per_hour": (1, 1_000_000, True),
    "max_attempts": (1, 20, False),
    "backoff_seconds": (0, 7 * 24 * 3600, False),
    "breaker_percent": (1, 100, False),
    "breaker_min_attempts": (1, 1000, False),
    "canary_percentage": (1, 100, False),
    "canary_check_interval": (1, 3600, False),
    "canary_max_duration": (1, 7 * 24 * 3600, False),
}
FIELDS = (*NUMBERS, "window_days", "window_start", "window_end", "window_timezone", "use_canary", "canary_criteria")


def _number(problems, field, value):
    low, high, optional = NUMBERS[field]
    if value in (None, "") and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(field, "A whole number is required." + (" Leave it empty for no limit." if optional else ""))
    elif not low <= value <= high:
        problems.add(field, f"Must be between {low} and {high:,}.")
    return value


def _time(problems, field, value):
    if value in (None, ""):
        return None
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        problems.add(field, "A time of day such as 22:00 is required.")
        return None


def validate(data: dict, current: RemediationSettings) -> dict:
    """The rails of `data` (missing keys keep `current`), or ApplicationError with every problem by field."""
    from canary.choices import Criterion

    problems = ErrorCollector()
    unknown = sorted(set(data) - set(FIELDS) - {"mode"})
    for key in unknown:
        problems.add(key, "Unknown setting.")
    clean = {f: data.get(f, getattr(current, f)) for f in FIELDS}
    for field in NUMBERS:
        clean[field] = _number(problems, field, clean[field])
    if not clean["max_instances"] and not clean["max_percent"] and not clean["max_per_hour"]:
        problems.add("max_instances", "Set at least one rate limit (instances at once, % of the scope, or per hour).")
    days = clean["window_days"]
    if not isinstance(days, list) or any(isinstance(d, bool) or d not in range(7) for d in days):
        problems.add("window_days", "A list of weekdays, 0 (Monday) to 6 (Sunday); empty for every day.")
    else:
        clean["window_days"] = sorted(set(days))
    clean["window_start"] = _time(problems, "window_start", clean["window_start"])
    clean["window_end"] = _time(problems, "window_end", clean["window_end"])
    if (clean["window_start"] is None) != (clean["window_end"] is None):
        problems.add("window_end", "Give both the start and the end of the window, or neither (all day).")
    elif clean["window_start"] is not None and clean["window_start"] == clean["window_end"]:
        # Empty or 24 hours? Neither reading is safe to guess for a window that lets fixes run.
        problems.add("window_end", "The window must end at another time than it starts; leave both empty for all day.")
    try:
        ZoneInfo(str(clean["window_timezone"] or ""))
    except (ZoneInfoNotFoundError, ValueError):
        problems.add("window_timezone", f"Unknown time zone '{clean['window_timezone']}' (e.g. Europe/Berlin, UTC).")
    if not isinstance(clean["use_canary"], bool):
        problems.add("use_canary", "Must be true or false.")
    criteria = clean["canary_criteria"]
    if not isinstance(criteria, list) or any(c not in Criterion.values for c in criteria):
        problems.add("canary_criteria", f"A list of criteria among {', '.join(Criterion.values)}.")
    if "mode" in data and data["mode"] not in PolicyMode.values:
        problems.add("mode", f"Choose {' or '.join(PolicyMode.values)}.")
    problems.raise_if_any()
    return clean


@transaction.atomic
def remediation_update(*, actor, policy: Policy, data: dict, source: str = VersionSource.UI) -> RemediationSettings:
    """Save the policy's mode (audit | enforce) and rails. Nothing is saved when anything is invalid.

    The mode is part of the policy (its policy file, its versions): changing it here records a new
    version, and is refused for a policy a GitOps repository owns (the rails are the panel's own)."""
    from ..services.policies import policy_check_writable
    from ..services.versions import version_record

    rails, _ = RemediationSettings.objects.select_for_update().get_or_create(policy=policy)
    clean = validate(data, rails)
    mode = data.get("mode", policy.mode)
    if mode != policy.mode:
        policy_check_writable(policy)
    for field, value in clean.items():
        setattr(rails, field, value)
    rails.save()
    if mode != policy.mode:
        Policy.objects.filter(pk=policy.pk).update(mode=mode, updated=timezone.now())
        policy.mode = mode
        version_record(policy=policy, change="changed", actor=actor, source=source)
    audit_log(
        actor=actor,
        action="policy.remediation",
        obj=policy,
        details={"mode": mode, **{k: (v.isoformat() if isinstance(v, time) else v) for k, v in clean.items()}},
    )
    return rails


def remediation_resume(*, actor, policy: Policy) -> RemediationSettings:
    """Resume after a pause; the breaker then counts only attempts finished after now (not the ones that tripped it)."""
    now = timezone.now()
    if not RemediationSettings.objects.filter(pk=policy.pk, paused_at__isnull=False).update(
        paused_at=None, pause_reason="", resumed_at=now
    ):
        raise ConflictError("Remediation of this policy is not paused.")
    audit_log(actor=actor, action="remediation.resume", obj=policy)
    return RemediationSettings.objects.get(pk=policy.pk)
