"""Reads shared by the pages and the API."""

from django.db.models import Count, Prefetch, Q, QuerySet

from fleet.choices import RunStatus
from fleet.selectors import instances_in_scope

from .choices import Criterion, Phase, PollPurpose, TargetRole
from .models import CanaryDeployment, CanaryTarget, EvaluationRound, HealthPoll

TIMELINE_ROUNDS = 40


def canary_list(*, queryset: QuerySet | None = None) -> QuerySet:
    qs = CanaryDeployment.objects.all() if queryset is None else queryset
    return (
        qs.select_related("created_by")
        .prefetch_related("scope_groups", "scope_instances")
        .annotate(
            canary_count=Count("targets", filter=Q(targets__role=TargetRole.CANARY, targets__excluded=False)),
            excluded_count=Count("targets", filter=Q(targets__excluded=True, targets__role=TargetRole.CANARY)),
            rollout_count=Count("targets", filter=Q(targets__role=TargetRole.ROLLOUT)),
        )
        .order_by("-created", "-id")  # GROUP BY queries ignore Meta.ordering
    )


def canary_get(pk: int) -> CanaryDeployment:
    return (
        CanaryDeployment.objects.select_related("created_by", "canary_command", "rollout_command")
        .prefetch_related(
            "scope_groups",
            "scope_instances",
            Prefetch("targets", queryset=CanaryTarget.objects.select_related("instance", "run", "revert_command")),
            "targets__revert_command__runs",
        )
        .get(pk=pk)
    )


def _latest_round(deployment, purpose) -> int | None:
    return (
        EvaluationRound.objects.filter(deployment=deployment, purpose=purpose)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )


def canary_status(deployment: CanaryDeployment) -> dict:
    """What the detail page and GET /api/fleet/canary/{id} show: health metrics, per-instance health, progress."""
    targets = list(deployment.targets.all())
    canary = [t for t in targets if t.role == TargetRole.CANARY and not t.excluded]
    excluded = [t for t in targets if t.excluded]
    rollout = [t for t in targets if t.role == TargetRole.ROLLOUT]
    latest = {}
    for purpose in (PollPurpose.EVALUATION, PollPurpose.VERIFICATION):
        number = _latest_round(deployment, purpose)
        if number:
            for poll in HealthPoll.objects.filter(deployment=deployment, purpose=purpose, round=number):
                latest[poll.instance_id] = poll
    rounds = list(EvaluationRound.objects.filter(deployment=deployment).order_by("purpose", "number"))
    evaluation_rounds = [r for r in rounds if r.purpose == PollPurpose.EVALUATION]
    last = evaluation_rounds[-1] if evaluation_rounds else None
    return {
        "canary": canary,
        "excluded": excluded,
        "rollout": rollout,
        "latest": latest,
        "instances": [{"target": t, "poll": latest.get(t.instance_id)} for t in canary],
        "healthy_percent": last.healthy_share if last else None,
        "passing": last.passing if last else None,
        "poll_count": HealthPoll.objects.filter(deployment=deployment).count(),
        "rounds": evaluation_rounds,
        "verification_rounds": [r for r in rounds if r.purpose == PollPurpose.VERIFICATION],
        "rollout_progress": rollout_progress(rollout),
        "planned_rollout": planned_rollout(deployment, canary)
        if deployment.phase in (Phase.CANARY, Phase.EVALUATION)
        else None,
    }


def rollout_progress(rollout_targets) -> dict:
    counts = {s: 0 for s in RunStatus.values}
    for t in rollout_targets:
        if t.run_id and t.run is not None:
            counts[t.run.status] += 1
    total = len(rollout_targets)
    done = counts[RunStatus.COMPLETED] + counts[RunStatus.FAILED]
    return {
        "total": total,
        **counts,
        "finished": done,
        "percent": round(100 * done / total) if total else 0,
        "failed_targets": [t for t in rollout_targets if t.run is not None and t.run.status == RunStatus.FAILED],
    }


def planned_rollout(deployment, canary_targets) -> int:
    ids = {t.instance_id for t in canary_targets}
    return instances_in_scope(deployment.scope).exclude(pk__in=ids).count()


def canary_timeline(deployment: CanaryDeployment, canary_targets) -> list[dict]:
    """Per canary instance, its polls of the last TIMELINE_ROUNDS evaluation rounds (oldest first)."""
    first = max(1, deployment.poll_round - TIMELINE_ROUNDS + 1)
    polls = HealthPoll.objects.filter(deployment=deployment, purpose=PollPurpose.EVALUATION, round__gte=first)
    by_instance: dict[int, list] = {}
    for poll in polls.order_by("round"):
        by_instance.setdefault(poll.instance_id, []).append(poll)
    verification = HealthPoll.objects.filter(deployment=deployment, purpose=PollPurpose.VERIFICATION).order_by("round")
    verify_by: dict[int, list] = {}
    for poll in verification:
        verify_by.setdefault(poll.instance_id, []).append(poll)
    return [
        {"target": t, "polls": by_instance.get(t.instance_id, []), "verification": verify_by.get(t.instance_id, [])}
        for t in canary_targets
    ]


def share_chart(deployment: CanaryDeployment, rounds) -> dict:
    """Chart.js config: healthy share per round against the threshold."""
    labels = [f"#{r.number}" for r in rounds]
    return {
        "type": "line",
        "data": {
            "labels": labels,
            "datasets": [
                {
                    "label": "Healthy share (%)",
                    "data": [r.healthy_share for r in rounds],
                    "borderColor": "#2563eb",
                    "backgroundColor": "rgba(37,99,235,.15)",
                    "fill": True,
                    "tension": 0.2,
                },
                {
                    "label": f"Threshold ({deployment.success_threshold} %)",
                    "data": [deployment.success_threshold] * len(rounds),
                    "borderColor": "#dc2626",
                    "borderDash": [6, 4],
                    "pointRadius": 0,
                    "fill": False,
                },
            ],
        },
        "options": {
            "scales": {"y": {"min": 0, "max": 100, "title": {"display": True, "text": "% of canary instances"}}}
        },
    }


def criteria_available() -> dict[str, str]:
    """{criterion: why it is unavailable} for criteria that cannot be used right now."""
    from .services import violations_provider

    fn, why = violations_provider()
    return {} if fn else {Criterion.NO_NEW_VIOLATIONS: why}
