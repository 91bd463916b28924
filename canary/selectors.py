"""Reads shared by the pages and the API."""

from django.db.models import Count, Prefetch, Q, QuerySet

from fleet.choices import RunStatus
from fleet.selectors import instances_in_scope

from . import evaluation
from .choices import ExclusionKind, Phase, PollPurpose, TargetRole
from .models import CanaryDeployment, CanaryTarget, EvaluationRound, HealthPoll

TIMELINE_ROUNDS = 40
TIMELINE_INSTANCES = 50


def canary_list(*, queryset: QuerySet | None = None) -> QuerySet:
    qs = CanaryDeployment.objects.all() if queryset is None else queryset
    return (
        qs.select_related("created_by")
        .prefetch_related("scope_groups", "scope_instances")
        .annotate(
            canary_count=Count("targets", filter=Q(targets__step=1, targets__excluded=False)),
            excluded_count=Count("targets", filter=Q(targets__excluded=True)),
            rollout_count=Count("targets", filter=Q(targets__role=TargetRole.ROLLOUT, targets__excluded=False)),
            reached_count=Count("targets", filter=Q(targets__step__isnull=False, targets__excluded=False)),
        )
        .order_by("-created", "-id")  # GROUP BY queries ignore Meta.ordering
    )


def canary_get(pk: int) -> CanaryDeployment:
    return (
        CanaryDeployment.objects.select_related("created_by", "canary_command", "rollout_command")
        .prefetch_related(
            "scope_groups",
            "scope_instances",
            "canary_requested",
            Prefetch(
                "targets",
                queryset=CanaryTarget.objects.select_related("instance", "run", "revert_command").order_by(
                    "step", "instance__name"
                ),
            ),
            "targets__revert_command__runs",
        )
        .get(pk=pk)
    )


def latest_polls(deployment: CanaryDeployment, purpose: str | None = None) -> dict[int, HealthPoll]:
    """{instance_id: its poll in the latest round}: the verification after a rollback, else the evaluation."""
    purposes = [purpose] if purpose else [PollPurpose.VERIFICATION, PollPurpose.EVALUATION]
    for which in purposes:
        number = (
            EvaluationRound.objects.filter(deployment=deployment, purpose=which)
            .order_by("-number")
            .values_list("number", flat=True)
            .first()
        )
        if number:
            polls = HealthPoll.objects.filter(deployment=deployment, purpose=which, round=number)
            return {p.instance_id: p for p in polls.select_related("instance")}
    return {}


def step_overview(deployment: CanaryDeployment, reached) -> list[dict]:
    """Each step as it runs: what it asks for, how many instances it reached, and where it stands."""
    from .services.apply import stage_label

    stages = deployment.stages
    rows = []
    for number, step in enumerate(stages, 1):
        if number < deployment.current_step:
            state = "passed"
        elif number > deployment.current_step:
            state = "skipped" if deployment.phase in (Phase.ROLLED_BACK, Phase.FAILED, Phase.ROLLBACK) else "pending"
        elif deployment.phase == Phase.SUCCEEDED:
            state = "passed"
        elif deployment.phase in (Phase.ROLLBACK, Phase.ROLLED_BACK):
            state = "rolled back"
        elif deployment.phase == Phase.FAILED:
            state = "failed"
        elif deployment.awaiting_approval:
            state = "awaiting approval"
        elif deployment.phase == Phase.EVALUATION or (deployment.phase == Phase.ROLLOUT and deployment.step_applied_at):
            state = "evaluating"
        else:
            state = "applying"
        rows.append(
            {
                "number": number,
                "label": stage_label(deployment, number),
                "percentage": step.percentage,
                "instances": list(step.instances),
                "approval": step.approval,
                "status": state,
                "reached": sum(1 for t in reached if t.step == number),
            }
        )
    return rows


def canary_status(deployment: CanaryDeployment) -> dict:
    """What the detail page and GET /api/fleet/canary/{id} show: health metrics, per-instance health, progress."""
    targets = list(deployment.targets.all())
    reached = [t for t in targets if t.step is not None and not t.excluded]
    canary = [t for t in reached if t.step == 1]
    excluded = [t for t in targets if t.excluded]
    rollout = [t for t in reached if t.role == TargetRole.ROLLOUT]
    latest = latest_polls(deployment)
    rounds = list(EvaluationRound.objects.filter(deployment=deployment).order_by("purpose", "number"))
    evaluation_rounds = [r for r in rounds if r.purpose == PollPurpose.EVALUATION]
    last = rounds[-1] if rounds else None  # ordered by purpose: the rollback's verification comes last
    return {
        "canary": canary,
        "reached": reached,
        "excluded": excluded,
        "passed_over": [t for t in excluded if t.exclusion_kind == ExclusionKind.PREFLIGHT],
        "missing_app": [t for t in excluded if t.exclusion_kind == ExclusionKind.MISSING_APP],
        "rollout": rollout,
        "latest": latest,
        "instances": [{"target": t, "poll": latest.get(t.instance_id)} for t in canary],
        "latest_round": last,
        "healthy_percent": last.healthy_share if last else None,
        "passing": last.passing if last else None,
        "poll_count": HealthPoll.objects.filter(deployment=deployment).count(),
        "rounds": evaluation_rounds,
        "verification_rounds": [r for r in rounds if r.purpose == PollPurpose.VERIFICATION],
        "steps": step_overview(deployment, reached),
        "rollout_progress": rollout_progress(rollout),
        "commands": commands_of(deployment, reached),
        "planned_rollout": planned_rollout(deployment, reached, excluded)
        if deployment.phase in (Phase.CANARY, Phase.EVALUATION)
        else None,
    }


def commands_of(deployment, reached) -> list[dict]:
    """The commands the deployment queued (one per wave), in order, with the step each belongs to."""
    seen = {}
    for t in sorted(reached, key=lambda t: t.run.command_id if t.run else 0):
        if t.run is not None and t.run.command_id not in seen:
            seen[t.run.command_id] = {"id": t.run.command_id, "step": t.step, "instances": 0}
        if t.run is not None:
            seen[t.run.command_id]["instances"] += 1
    return list(seen.values())


def rollout_progress(rollout_targets) -> dict:
    counts = {s: 0 for s in RunStatus.values}
    waiting = 0
    for t in rollout_targets:
        if t.run_id and t.run is not None:
            counts[t.run.status] += 1
        else:
            waiting += 1
    total = len(rollout_targets)
    done = counts[RunStatus.COMPLETED] + counts[RunStatus.FAILED]
    return {
        "total": total,
        **counts,
        "waiting": waiting,
        "finished": done,
        "percent": round(100 * done / total) if total else 0,
        "failed_targets": [t for t in rollout_targets if t.run is not None and t.run.status == RunStatus.FAILED],
    }


def planned_rollout(deployment, reached, excluded) -> int:
    ids = {t.instance_id for t in reached} | {
        t.instance_id for t in excluded if t.exclusion_kind == ExclusionKind.MISSING_APP
    }
    return instances_in_scope(deployment.scope).exclude(pk__in=ids).count()


def canary_polls(deployment: CanaryDeployment) -> QuerySet:
    """Every poll of a deployment, newest round first (filtered by canary.filters.HealthPollFilter)."""
    return (
        HealthPoll.objects.filter(deployment=deployment)
        .select_related("instance")
        .order_by("-polled_at", "-round", "instance__name", "pk")
    )


def canary_timeline(deployment: CanaryDeployment, reached) -> list[dict]:
    """Per instance (the first TIMELINE_INSTANCES), its polls of the last TIMELINE_ROUNDS rounds (oldest first)."""
    shown = reached[:TIMELINE_INSTANCES]
    first = max(1, deployment.poll_round - TIMELINE_ROUNDS + 1)
    polls = HealthPoll.objects.filter(
        deployment=deployment,
        purpose=PollPurpose.EVALUATION,
        round__gte=first,
        instance_id__in=[t.instance_id for t in shown],
    )
    by_instance: dict[int, list] = {}
    for poll in polls.order_by("round"):
        by_instance.setdefault(poll.instance_id, []).append(poll)
    verification = HealthPoll.objects.filter(
        deployment=deployment, purpose=PollPurpose.VERIFICATION, instance_id__in=[t.instance_id for t in shown]
    ).order_by("round")
    verify_by: dict[int, list] = {}
    for poll in verification:
        verify_by.setdefault(poll.instance_id, []).append(poll)
    return [
        {"target": t, "polls": by_instance.get(t.instance_id, []), "verification": verify_by.get(t.instance_id, [])}
        for t in shown
    ]


def share_chart(deployment: CanaryDeployment, rounds) -> dict:
    """Chart.js config: the healthy share and the share counting towards the threshold, per round.

    A linear x axis (round numbers) so the threshold is a line from the first round to the last even
    when there is only one round, and each round is a visible point.
    """
    first = rounds[0].number if rounds else 1
    last = rounds[-1].number if rounds else 1
    threshold = deployment.success_threshold
    datasets = [
        {
            "label": "Healthy this round (%)",
            "data": [{"x": r.number, "y": r.healthy_share} for r in rounds],
            "borderColor": "#2563eb",
            "backgroundColor": "rgba(37,99,235,.15)",
            "fill": True,
            "tension": 0.2,
            "pointRadius": 5,
        }
    ]
    if deployment.consecutive_healthy > 1:
        datasets.append(
            {
                "label": f"Counting towards the threshold ({deployment.consecutive_healthy} in a row) (%)",
                "data": [{"x": r.number, "y": evaluation.healthy_share(r.passing, r.total)} for r in rounds],
                "borderColor": "#16a34a",
                "fill": False,
                "pointRadius": 3,
            }
        )
    datasets.append(
        {
            "label": f"Threshold ({threshold} %)",
            "data": [{"x": first - 0.5, "y": threshold}, {"x": last + 0.5, "y": threshold}],
            "borderColor": "#dc2626",
            "borderDash": [6, 4],
            "pointRadius": 0,
            "fill": False,
        }
    )
    x_axis = {
        "type": "linear",
        "min": first - 0.5,
        "max": last + 0.5,
        "ticks": {"stepSize": 1, "precision": 0, "includeBounds": False},
        "title": {"display": True, "text": "round"},
    }
    return {
        "type": "line",
        "data": {"datasets": datasets},
        "options": {
            "scales": {"x": x_axis, "y": {"min": 0, "max": 100, "title": {"display": True, "text": "% of instances"}}}
        },
    }
