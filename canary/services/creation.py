"""Creation: validation with every problem at once, the overlap refusal, then `canary_create`.

Errors are keyed by the API's own field paths (`canary.instances`, `change.params.version`,
`steps[1].percentage`, `health_check_url`, …); the HTML form maps them onto its fields.
"""

import re

from django.db import connection, transaction
from django.utils import timezone

from common.exceptions import ApplicationError, ConflictError, ErrorCollector
from common.services import audit_log
from fleet import commands as command_logic
from fleet.choices import CommandType
from fleet.licensing_store import require_feature
from fleet.models import Instance
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope
from fleet.services import scope_apply

from .. import evaluation, timing
from ..choices import ACTIVE_PHASES, Criterion, MissingAppPolicy, Phase, PreflightPolicy, SelectionKind
from ..models import CanaryDeployment
from . import apply
from .base import FEATURE, configured_probe_timeout
from .preflight import Selection, canary_plan, violation_keys
from .scheduling import schedule_now

MAX_STEPS = 20
MAX_DURATION = 7 * 24 * 3600
# A path, optionally with a query: no scheme, host, user info, fragment, backslash or whitespace.
_PATH = re.compile(r"^/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:%/?]*\Z")


def health_path_problem(path) -> str:
    """Why `path` is not a health path the panel may request on an instance ("" when it is)."""
    if not isinstance(path, str) or not path.startswith("/"):
        return "The health check URL must be a path starting with / (e.g. /health), not a full URL."
    if len(path) > 200:
        return "The health check URL must be at most 200 characters."
    if path.startswith("//") or "@" in path or "\\" in path or "://" in path:
        return "The health check URL must be a path on the instance itself: no host, user, // or backslash."
    if not _PATH.match(path):
        return "The health check URL may only contain URL path characters (no spaces, #, or control characters)."
    return ""


def _ids(items) -> list[int]:
    return [getattr(i, "pk", i) for i in items or ()]


def _params(problems: ErrorCollector, kind: str, params) -> dict:
    try:
        clean = command_logic.validate_params(kind, params)
    except command_logic.CommandParamsError as exc:
        problems.add(exc.path("change."), str(exc))
        return {}
    return clean


def _steps(problems: ErrorCollector, steps, scope_ids: set, names: dict) -> list[evaluation.Step]:
    if len(steps) > MAX_STEPS:
        problems.add("steps", f"At most {MAX_STEPS} steps.")
        return []
    out, seen, last_share = [], set(), 0
    for index, raw in enumerate(steps):
        where = f"steps[{index}]"
        share, members = raw.get("percentage"), _ids(raw.get("instances"))
        if (share is None) == (not members):
            problems.add(where, "Give either a percentage of the scope or a list of instances.")
            continue
        if share is not None:
            if not isinstance(share, int) or not 1 <= share <= 100:
                problems.add(f"{where}.percentage", "The percentage must be between 1 and 100.")
            elif share <= last_share:
                problems.add(
                    f"{where}.percentage",
                    f"Each step must reach more of the scope than the one before ({last_share} %).",
                )
            else:
                last_share = share
        outside = [names.get(i, f"#{i}") for i in members if i not in scope_ids]
        if outside:
            problems.add(
                f"{where}.instances", f"These instances are not in the deployment's scope: {', '.join(outside)}."
            )
        twice = [names.get(i, f"#{i}") for i in members if i in seen]
        if twice:
            problems.add(f"{where}.instances", f"Already in an earlier step: {', '.join(twice)}.")
        seen.update(members)
        out.append(evaluation.Step(percentage=share, instances=tuple(members), approval=bool(raw.get("approval"))))
    if out and out[-1].approval and out[-1].percentage == 100:
        problems.add(
            f"steps[{len(out) - 1}].approval",
            "The last step reaches the whole scope: there is nothing after it to approve.",
        )
    return out


def validate(
    *,
    kind,
    params,
    scope: Scope,
    selection,
    percentage,
    instances,
    steps,
    criteria,
    success_threshold,
    health_path,
    check_interval,
    max_duration,
    consecutive_healthy,
    preflight_policy,
    missing_app_policy,
    max_unavailable,
    name="",
) -> dict:
    """Every problem of a deployment request at once (ApplicationError with `errors` by field path)."""
    problems = ErrorCollector()
    if kind not in CommandType.values:
        problems.add("change.kind", f"Unknown change '{kind}': use one of {', '.join(CommandType.values)}.")
        clean_params = {}
    else:
        clean_params = _params(problems, kind, params)
    scope_ids = set(instances_in_scope(scope).values_list("pk", flat=True))
    plan_steps = _selection(problems, selection, percentage, instances, steps, scope_ids)
    criteria = list(dict.fromkeys(criteria or []))
    if not criteria:
        problems.add("criteria", "Choose at least one success criterion.")
    for unknown in [c for c in criteria if c not in Criterion.values]:
        problems.add("criteria", f"Unknown criterion '{unknown}': use {', '.join(Criterion.values)}.")
    if not isinstance(success_threshold, int) or not 1 <= success_threshold <= 100:
        problems.add("success_threshold", "The success threshold must be between 1 and 100 %.")
    if why := health_path_problem(health_path):
        problems.add("health_check_url", why)
    _timing(problems, check_interval, max_duration, consecutive_healthy, polled=max(1, len(scope_ids)))
    if preflight_policy not in PreflightPolicy.values:
        problems.add("preflight", "The pre-flight policy must be exclude or block.")
    if missing_app_policy not in MissingAppPolicy.values:
        problems.add("missing_app", "Choose exclude or refuse for instances that lack the app.")
    if max_unavailable is not None and (not isinstance(max_unavailable, int) or max_unavailable < 1):
        problems.add(
            "max_unavailable", "At least one instance must be allowed to change at a time (or leave it empty)."
        )
    if len(name or "") > 120:
        problems.add("name", "At most 120 characters.")
    problems.raise_if_any()
    return {"params": clean_params, "criteria": criteria, "steps": plan_steps, "explicit_steps": bool(steps)}


def _selection(problems, selection, percentage, instances, steps, scope_ids) -> list[evaluation.Step]:
    """The steps the request asks for: its `steps`, or its canary group as the first step."""
    asked = set(_ids(instances)) | {i for s in steps or () for i in _ids(s.get("instances"))}
    names = dict(Instance.objects.filter(pk__in=asked).values_list("pk", "name"))
    if steps:
        if percentage or instances:
            problems.add("canary", "Give either a canary group or steps, not both (the first step is the canary).")
        return _steps(problems, list(steps), scope_ids, names)
    if selection not in SelectionKind.values:
        problems.add("canary", f"Unknown canary selection '{selection}': use percentage or instances.")
    elif selection == SelectionKind.PERCENTAGE:
        if isinstance(percentage, int) and 1 <= percentage <= 100:
            return [evaluation.Step(percentage=percentage)]
        problems.add("canary.percentage", "The canary percentage must be between 1 and 100.")
    elif not instances:
        problems.add("canary.instances", "Choose at least one canary instance.")
    else:
        outside = [names.get(i, f"#{i}") for i in _ids(instances) if i not in scope_ids]
        if outside:
            problems.add(
                "canary.instances",
                f"Canary instances must be in the deployment's scope; not in it: {', '.join(outside)}.",
            )
        return [evaluation.Step(instances=tuple(sorted(_ids(instances), key=lambda i: names.get(i, ""))))]
    return []


def _timing(problems, check_interval, max_duration, consecutive_healthy, *, polled: int) -> None:
    """The interval the scheduler can honour for `polled` instances, the max duration, and whether the
    required rounds in a row can happen within it at all."""
    interval_ok = isinstance(check_interval, int)
    if not interval_ok:
        problems.add("check_interval", "The check interval must be a whole number of seconds.")
    elif why := timing.interval_problem(check_interval, configured_probe_timeout(), polled):
        problems.add("check_interval", why)
        interval_ok = False
    duration_ok = isinstance(max_duration, int) and 1 <= max_duration <= MAX_DURATION
    if not duration_ok:
        problems.add("max_duration", "The max duration must be between 1 second and 7 days.")
    elif interval_ok and max_duration < check_interval:
        problems.add(
            "max_duration",
            f"The max duration ({max_duration} s) must be at least the check interval ({check_interval} s).",
        )
    if not isinstance(consecutive_healthy, int) or not 1 <= consecutive_healthy <= 100:
        problems.add("consecutive_healthy_polls", "Consecutive healthy polls must be between 1 and 100.")
    elif interval_ok and duration_ok and not timing.rounds_fit(consecutive_healthy, check_interval, max_duration):
        problems.add(
            "consecutive_healthy_polls",
            f"{consecutive_healthy} healthy polls in a row, one every {check_interval} s, take "
            f"{(consecutive_healthy - 1) * check_interval} s: more than the max duration of {max_duration} s, "
            "so the deployment could never pass.",
        )


def overlapping(*, kind: str, params: dict, instance_ids: set) -> tuple[CanaryDeployment, str, list] | None:
    """A running deployment that changes the same app / setting / OS on some of these instances, if any."""
    mine = evaluation.change_resources(kind, params)
    for other in CanaryDeployment.objects.filter(phase__in=ACTIVE_PHASES).order_by("pk"):
        same = mine & evaluation.change_resources(other.command_kind, other.command_params)
        if not same:
            continue
        reached = set(other.targets.filter(step__isnull=False).values_list("instance_id", flat=True))
        theirs = changing_ids(other.command_kind, other.command_params, other.scope) | reached
        common = instance_ids & theirs
        if common:
            names = list(Instance.objects.filter(pk__in=common).order_by("name").values_list("name", flat=True))
            return other, sorted(same)[0], names
    return None


def _refuse_overlap(*, kind, params, instance_ids) -> None:
    found = overlapping(kind=kind, params=params, instance_ids=instance_ids)
    if found:
        other, what, names = found
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise ConflictError(
            f"{other} (#{other.pk}, {other.get_phase_display().lower()}) is already changing {what} on "
            f"{len(names)} of these instances ({listed}). Wait until it has finished, or roll it back, first.",
            extra={"running_deployment": {"id": other.pk, "name": str(other), "phase": other.phase}},
        )


def _serialise_creations() -> None:
    """Creations check for overlaps, then insert: one at a time, so two racing creations cannot both pass the
    check. PostgreSQL: a transaction-level advisory lock; SQLite's IMMEDIATE transactions already are one."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('canary.create'))")


def canary_create(
    *,
    actor,
    kind: str,
    params: dict,
    scope: Scope,
    selection: str = SelectionKind.PERCENTAGE,
    percentage: int | None = None,
    instances=(),
    steps=None,
    criteria=(Criterion.HEALTH_CHECK,),
    success_threshold: int = 100,
    health_path: str = "/health",
    check_interval: int = 30,
    max_duration: int = 600,
    consecutive_healthy: int = 1,
    preflight_policy: str = PreflightPolicy.EXCLUDE,
    missing_app_policy: str = MissingAppPolicy.EXCLUDE,
    max_unavailable: int | None = None,
    name: str = "",
) -> CanaryDeployment:
    """Start a deployment: validate, refuse overlaps (409), pre-flight, then send the first step's change.

    Nothing is written when anything refuses. The pre-flight probes run before the transaction opens.
    """
    require_feature(FEATURE)
    given = {
        "kind": kind,
        "params": params,
        "scope": scope,
        "selection": selection,
        "percentage": percentage,
        "instances": list(instances or ()),
        "steps": steps,
        "criteria": criteria,
        "success_threshold": success_threshold,
        "health_path": health_path,
        "check_interval": check_interval,
        "max_duration": max_duration,
        "consecutive_healthy": consecutive_healthy,
        "preflight_policy": preflight_policy,
        "missing_app_policy": missing_app_policy,
        "max_unavailable": max_unavailable,
        "name": name,
    }
    clean = validate(**given)
    changing = changing_ids(kind, clean["params"], scope)
    _refuse_overlap(kind=kind, params=clean["params"], instance_ids=changing)
    timeout = timing.probe_timeout(check_interval, configured_probe_timeout())
    plan = canary_plan(
        scope=scope,
        steps=clean["steps"],
        kind=kind,
        params=clean["params"],
        criteria=clean["criteria"],
        health_path=health_path,
        preflight_policy=preflight_policy,
        missing_app_policy=missing_app_policy,
        timeout=timeout,
    )
    if plan.blocked:
        excluded = [{"instance": i.name, "reason": r} for i, r in plan.excluded + plan.missing]
        raise ApplicationError(plan.blocked, field=plan.blocked_field or None, extra={"excluded": excluded})
    baseline = {}
    if Criterion.NO_NEW_VIOLATIONS in clean["criteria"]:
        keys = violation_keys([i.pk for i in plan.canary])
        baseline = {str(i.pk): sorted(keys.get(i.pk, ())) for i in plan.canary}
    with transaction.atomic():
        _serialise_creations()
        _refuse_overlap(kind=kind, params=clean["params"], instance_ids=changing)
        deployment = _insert(actor, given, clean, plan, baseline)
    schedule_now(deployment.pk)
    return deployment


def changing_ids(kind: str, params: dict, scope: Scope) -> set[int]:
    """The instances of `scope` a change would touch: all of them, less those lacking the app to change."""
    instances = instances_in_scope(scope)
    if not evaluation.needs_installed_app(kind):
        return set(instances.values_list("pk", flat=True))
    return {
        i.pk for i in instances.only("pk", "apps") if command_logic.find_app({"apps": i.apps}, params.get("app", ""))
    }


def _insert(actor, given: dict, clean: dict, plan, baseline: dict) -> CanaryDeployment:
    now = timezone.now()
    selection = given["selection"]
    explicit = clean["explicit_steps"]
    deployment = CanaryDeployment.objects.create(
        name=(given["name"] or "").strip()[:120],
        command_kind=given["kind"],
        command_params=clean["params"],
        selection=SelectionKind.PERCENTAGE if explicit else selection,
        canary_percentage=clean["steps"][0].percentage if clean["steps"] else None,
        steps=[s.as_dict() for s in clean["steps"]] if explicit else [],
        criteria=clean["criteria"],
        success_threshold=given["success_threshold"],
        health_path=given["health_path"],
        check_interval_seconds=given["check_interval"],
        max_duration_seconds=given["max_duration"],
        consecutive_healthy=given["consecutive_healthy"],
        preflight_policy=given["preflight_policy"],
        missing_app_policy=given["missing_app_policy"],
        max_unavailable=given["max_unavailable"],
        phase=Phase.CANARY,
        created_by=actor if getattr(actor, "pk", None) else None,
        started_at=now,
        step_started_at=now,
        violations_baseline=baseline,
    )
    scope_apply(deployment, given["scope"])
    if not explicit and selection == SelectionKind.INSTANCES:
        deployment.canary_requested.set(given["instances"])
    first = Selection(members=plan.canary, passed_over=plan.excluded, lacking=plan.missing)
    targets = apply.record_selection(deployment, 1, first)
    apply.send_wave(deployment, targets, actor=actor, now=now)
    audit_log(
        actor=actor,
        action="canary.create",
        obj=deployment,
        details={
            "change": command_logic.describe(given["kind"], clean["params"]),
            "canary": [i.name for i in plan.canary],
            "excluded": {i.name: why for i, why in plan.excluded + plan.missing},
            "planned_rollout": len(plan.rollout),
            "steps": [s.as_dict() for s in deployment.stages],
            "criteria": clean["criteria"],
            "threshold": given["success_threshold"],
        },
    )
    return deployment
