"""Pre-flight and probes: which instances a step reaches, which are passed over or excluded, and why.

Reads and HTTP only; nothing here writes. Probes run outside any transaction.
"""

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from common.net import parse_address, resolve_outbound
from fleet import commands as command_logic
from fleet.choices import InstanceStatus
from fleet.models import Instance
from fleet.scopes import Scope
from fleet.selectors import instances_in_scope
from governance.selectors import open_violation_keys

from .. import evaluation, probes
from ..choices import Criterion, PreflightPolicy
from .base import configured_probe_timeout


def health_url(instance: Instance, path: str) -> str:
    return f"{instance.health_base_url}{path}" if instance.address else ""


def probe_instances(instances, path: str, timeout: float | None = None) -> dict[int, probes.ProbeResult]:
    """Probe every instance's health URL in one concurrent round. Each address goes through the outbound
    rules first (common.net.resolve_outbound): a refused one is unhealthy with the reason and never contacted."""
    timeout = configured_probe_timeout() if timeout is None else timeout
    by_id, targets, owners = {}, [], []
    for inst in instances:
        if not inst.address:
            by_id[inst.pk] = probes.ProbeResult("", False, None, None, "the instance has no health address")
            continue
        try:
            host, port = parse_address(inst.address)
        except ValidationError:
            reason = "the instance's address is not host[:port], so it is not polled"
            by_id[inst.pk] = probes.ProbeResult(health_url(inst, path)[:400], False, None, None, reason)
            continue
        targets.append(probes.Target(host, port or 80, path))
        owners.append(inst)
    results = probes.poll_many(targets, timeout=timeout, resolve=resolve_outbound)
    for inst, result in zip(owners, results, strict=True):
        by_id[inst.pk] = probes.ProbeResult(
            health_url(inst, path)[:400], result.healthy, result.status_code, result.latency_ms, result.reason
        )
    return by_id


def violation_keys(instance_ids) -> dict[int, set]:
    """Open-violation keys per instance, from governance (the "no new violations" criterion)."""
    result = open_violation_keys(list(instance_ids)) or {}
    return {int(k): set(map(str, v)) for k, v in result.items()}


def offline_reason(instance: Instance) -> str:
    if instance.status == InstanceStatus.ONLINE:
        return ""
    if instance.status == InstanceStatus.PENDING:
        return "has not sent a heartbeat yet"
    seen = f" (last heartbeat {instance.last_seen_at:%Y-%m-%d %H:%M:%S} UTC)" if instance.last_seen_at else ""
    return f"offline{seen}"


def missing_app_reason(instance: Instance, kind: str, params: dict) -> str:
    """Why the change cannot apply to this instance at all ("" when it can): the app to change is not there."""
    if not evaluation.needs_installed_app(kind):
        return ""
    app = params.get("app", "")
    if not app:  # no app named yet (the live preview of a form being filled in)
        return ""
    return "" if command_logic.find_app(instance.state, app) else f"{app} is not installed"


@dataclass
class Selection:
    """The instances one step reaches, and those it passed over or excluded, each with the reason."""

    members: list = field(default_factory=list)
    passed_over: list = field(default_factory=list)  # [(Instance, reason)]: not now, maybe a later step
    lacking: list = field(default_factory=list)  # [(Instance, reason)]: never (the app is missing)
    unjudged: dict = field(default_factory=dict)  # {Instance: reason}: rollout members already unhealthy
    requested: int = 0  # how many the step asked for
    probed: bool = False


def candidate_problems(candidates, *, criteria, health_path, timeout, probe: bool) -> dict:
    """{instance: why it should not get the change now}: offline, or unhealthy before the change."""
    problems = {i: offline_reason(i) for i in candidates if offline_reason(i)}
    if probe and Criterion.HEALTH_CHECK in criteria:
        online = [i for i in candidates if i not in problems]
        by_pk = {i.pk: i for i in online}
        for inst_id, result in probe_instances(online, health_path, timeout).items():
            if not result.healthy:
                problems[by_pk[inst_id]] = f"unhealthy before the change: {result.reason}"
    return problems


def select_members(
    *,
    scope_instances: list,
    step: evaluation.Step,
    final: bool,
    reached_ids: set,
    kind: str,
    params: dict,
    criteria,
    health_path: str,
    timeout: float,
    probe: bool = True,
) -> Selection:
    """Choose the instances a step reaches, from the scope as it is now (ordered by name).

    Instances lacking the app are never chosen. A non-final step passes over offline or unhealthy
    candidates (the next one in name order takes the place of each); the final step (the rest of the
    scope) sends the change to all of them, and those already unhealthy are watched but not judged.
    """
    lacking = [
        (i, why) for i in scope_instances if i.pk not in reached_ids and (why := missing_app_reason(i, kind, params))
    ]
    lacking_ids = {i.pk for i, _ in lacking}
    eligible = [i for i in scope_instances if i.pk not in lacking_ids]
    candidates = [i for i in eligible if i.pk not in reached_ids]
    if step.percentage is None:
        wanted = set(step.instances)
        candidates = [i for i in candidates if i.pk in wanted]
    reached = len([i for i in eligible if i.pk in reached_ids])
    size = (
        len(candidates)
        if final
        else min(len(candidates), evaluation.step_size(step, eligible=len(eligible), reached=reached))
    )
    selection = Selection(lacking=lacking, requested=size, probed=probe and Criterion.HEALTH_CHECK in criteria)
    if size == 0:
        return selection
    if final:
        selection.members = candidates
        selection.unjudged = candidate_problems(
            candidates, criteria=criteria, health_path=health_path, timeout=timeout, probe=probe
        )
        return selection
    # Probing every candidate would cost a round over the whole scope for a 5 % step: probe in name order,
    # twice as many as still needed at a time, until enough healthy ones are found.
    http = probe and Criterion.HEALTH_CHECK in criteria
    problems, probed = {}, 0 if http else len(candidates)
    if not http:
        problems = candidate_problems(
            candidates, criteria=criteria, health_path=health_path, timeout=timeout, probe=False
        )
    while probed < len(candidates):
        fine = sum(c not in problems for c in candidates[:probed])
        if fine >= size:
            break
        batch = candidates[probed : probed + (size - fine) * 2]
        problems.update(
            candidate_problems(batch, criteria=criteria, health_path=health_path, timeout=timeout, probe=True)
        )
        probed += len(batch)
    candidates = candidates[:probed]
    selection.members, selection.passed_over = evaluation.choose_canary(candidates, size, problems)
    return selection


@dataclass
class CanaryPlan:
    """What a deployment would do if started now: the first step, exclusions, the rest, and whether it may start."""

    scope_size: int
    canary_size: int
    canary: list = field(default_factory=list)
    excluded: list = field(default_factory=list)  # [(Instance, reason)] passed over by the pre-flight
    missing: list = field(default_factory=list)  # [(Instance, reason)] lacking the app: never changed
    rollout: list = field(default_factory=list)
    stage_sizes: list = field(default_factory=list)
    blocked: str = ""  # why the start is refused ("" when it may start)
    blocked_field: str = ""
    probed: bool = False


def canary_plan(
    *,
    scope: Scope,
    steps: list,
    kind: str,
    params: dict,
    criteria=(),
    health_path: str = "/health",
    preflight_policy: str = PreflightPolicy.EXCLUDE,
    missing_app_policy: str = "exclude",
    timeout: float | None = None,
    probe: bool = True,
) -> CanaryPlan:
    """Work out the first step and what follows, running the pre-flight checks. Writes nothing.

    `probe=False` (the live preview) checks status and apps but sends no HTTP request.
    """
    timeout = configured_probe_timeout() if timeout is None else timeout
    in_scope = list(instances_in_scope(scope).order_by("name"))
    stage_list = evaluation.stages(steps)
    plan = CanaryPlan(scope_size=len(in_scope), canary_size=0)
    if not in_scope:
        plan.blocked, plan.blocked_field = "The scope matches no instances: there is nothing to deploy to.", "scope"
        return plan
    first = select_members(
        scope_instances=in_scope,
        step=stage_list[0],
        final=len(stage_list) == 1,
        reached_ids=set(),
        kind=kind,
        params=params,
        criteria=criteria,
        health_path=health_path,
        timeout=timeout,
        probe=probe,
    )
    plan.canary, plan.excluded, plan.missing, plan.probed = (
        first.members,
        first.passed_over,
        first.lacking,
        first.probed,
    )
    plan.canary_size = first.requested
    chosen = {i.pk for i in plan.canary}
    missing_ids = {i.pk for i, _ in plan.missing}
    plan.rollout = [i for i in in_scope if i.pk not in chosen and i.pk not in missing_ids]
    plan.stage_sizes = evaluation.forecast(steps, len(in_scope) - len(plan.missing))
    listed = "; ".join(f"{i.name}: {why}" for i, why in plan.excluded)
    if plan.missing and missing_app_policy == "refuse":
        names = ", ".join(i.name for i, _ in plan.missing[:20]) + (" …" if len(plan.missing) > 20 else "")
        plan.blocked_field = "missing_app"
        plan.blocked = (
            f"{len(plan.missing)} instance(s) in scope lack {params.get('app')}, so the change would fail there: "
            f"{names}. Exclude them (missing_app: exclude) or narrow the scope."
        )
    elif not plan.canary:
        plan.blocked_field = "canary"
        plan.blocked = (
            f"No canary candidate is online and healthy, so the canary cannot start ({listed or 'none in scope'})."
        )
    elif preflight_policy == PreflightPolicy.BLOCK and plan.excluded:
        plan.blocked_field = "preflight"
        plan.blocked = f"Pre-flight found unhealthy or offline canary candidates and the policy is to block: {listed}."
    return plan
