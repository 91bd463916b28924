"""Reads shared by the HTML views, the API and other apps. Aggregates only: the dashboard cost does not
grow with the number of rows it summarises beyond what the database's aggregates cost."""

from datetime import datetime, time, timedelta

from django.db.models import Avg, Count, F, Q, QuerySet
from django.utils import timezone

from fleet.models import Group, Instance
from fleet.selectors import instances_in_scope

from . import evaluators, scores
from .choices import CURRENT_STATUSES, SEVERITY_RANK, PolicyState, PolicyType, Severity, SnapshotKind, ViolationStatus
from .filters import filter_instances_by_group, filter_instances_by_tags
from .models import (
    ComplianceSnapshot,
    InstanceCompliance,
    InstanceSnapshot,
    Policy,
    PolicyCompliance,
    PolicyException,
    ReleaseRecord,
    Violation,
)


def open_violation_keys(instance_ids: list[int]) -> dict[int, set[str]]:
    """For the canary's "no new violations" criterion: {instance_id: {"<policy_id>:<rule_key>"}} of OPEN
    (not exempted) violations. Every requested id is present, with an empty set when it has none."""
    result: dict[int, set[str]] = {int(i): set() for i in instance_ids}
    rows = Violation.objects.filter(instance_id__in=list(result), status=ViolationStatus.OPEN).values_list(
        "instance_id", "policy_id", "rule_key"
    )
    for instance_id, policy_id, rule_key in rows:
        result[instance_id].add(f"{policy_id}:{rule_key}")
    return result


def _narrow(queryset: QuerySet, *, group=None, tag: str = "", field="instance") -> QuerySet:
    if group is not None:
        queryset = filter_instances_by_group(queryset, group, field)
    if tag:
        queryset = filter_instances_by_tags(queryset, tag, field)
    return queryset


def fleet_compliance(*, group: Group | None = None, tag: str = "") -> dict:
    """Fleet average (instances with applicable policies only), how many were excluded and why, and a breakdown."""
    qs = _narrow(InstanceCompliance.objects.all(), group=group, tag=tag)
    agg = qs.aggregate(
        average=Avg("score"),
        scored=Count("pk", filter=Q(score__isnull=False)),
        full=Count("pk", filter=Q(score=100)),
        high=Count("pk", filter=Q(score__gte=80, score__lt=100)),
        mid=Count("pk", filter=Q(score__gte=50, score__lt=80)),
        low=Count("pk", filter=Q(score__lt=50)),
        unknown=Count("pk", filter=Q(stale=True)),
        no_policies=Count("pk", filter=Q(stale=False, applicable=0)),
    )
    agg["average"] = scores.display(agg["average"])
    return agg


def violation_counts(*, group: Group | None = None, tag: str = "") -> dict:
    """Current violations by severity (open) and how many are exempted."""
    qs = _narrow(Violation.objects.filter(status__in=CURRENT_STATUSES), group=group, tag=tag)
    agg = qs.aggregate(
        critical=Count("pk", filter=Q(status=ViolationStatus.OPEN, severity=Severity.CRITICAL)),
        warning=Count("pk", filter=Q(status=ViolationStatus.OPEN, severity=Severity.WARNING)),
        info=Count("pk", filter=Q(status=ViolationStatus.OPEN, severity=Severity.INFO)),
        exempted=Count("pk", filter=Q(status=ViolationStatus.EXEMPTED)),
    )
    agg["open"] = agg["critical"] + agg["warning"] + agg["info"]
    return agg


def top_failing_policies(*, group: Group | None = None, tag: str = "", limit: int = 8) -> list[dict]:
    """Policies with the most instances currently failing them, with their pass rate.

    Fleet-wide this reads the maintained per-policy counts (one small query); narrowed to a group or
    tag it counts the open violations of the instances there.
    """
    if group is None and not tag:
        rows = []
        qs = (
            PolicyCompliance.objects.filter(noncompliant__gt=0)
            .select_related("policy")
            .order_by("-noncompliant", "policy__name")
        )
        for pc in qs[:limit]:
            rows.append(
                {
                    "policy_id": pc.policy_id,
                    "policy_name": pc.policy.name,
                    "severity": pc.policy.severity,
                    "instances": pc.noncompliant,
                    "score": pc.score,
                }
            )
        return rows
    qs = _narrow(Violation.objects.filter(status=ViolationStatus.OPEN, policy__isnull=False), group=group, tag=tag)
    rows = list(
        qs.values("policy_id", "policy_name", "severity")
        .annotate(instances=Count("instance_id", distinct=True))
        .order_by("-instances", "policy_name")[:limit]
    )
    scores = {pc.pk: pc for pc in PolicyCompliance.objects.filter(pk__in=[r["policy_id"] for r in rows])}
    for r in rows:
        pc = scores.get(r["policy_id"])
        r["score"] = pc.score if pc else None
    return rows


def lowest_scoring_instances(*, group: Group | None = None, tag: str = "", limit: int = 10) -> list[InstanceCompliance]:
    qs = _narrow(InstanceCompliance.objects.filter(score__isnull=False, score__lt=100), group=group, tag=tag)
    return list(qs.select_related("instance").order_by("score", "instance__name")[:limit])


def instance_scores(*, queryset: QuerySet | None = None) -> QuerySet:
    """Per-instance scores (drill-down), lowest first; instances without applicable policies last."""
    qs = InstanceCompliance.objects.all() if queryset is None else queryset
    return qs.select_related("instance").order_by(F("score").asc(nulls_last=True), "instance__name")


def group_scores() -> list[dict]:
    """Average score per group, over its instances that have applicable policies."""
    rows = (
        InstanceCompliance.objects.filter(score__isnull=False, instance__groups__isnull=False)
        .values("instance__groups", "instance__groups__name")
        .annotate(average=Avg("score"), instances=Count("pk"))
        .order_by("instance__groups__name")
    )
    return [
        {
            "group_id": r["instance__groups"],
            "group": r["instance__groups__name"],
            "average": scores.display(r["average"]),
            "instances": r["instances"],
        }
        for r in rows
    ]


def policy_scores() -> list[dict]:
    """Per policy: % of scoped instances passing (exempt and unknown instances do not count)."""
    result = []
    for p in Policy.objects.select_related("compliance").order_by("name"):
        pc = getattr(p, "compliance", None)
        result.append(
            {
                "policy_id": p.pk,
                "policy": p.name,
                "policy_type": p.policy_type,
                "enabled": p.enabled,
                "score": pc.score if pc else None,
                "compliant": pc.compliant if pc else 0,
                "noncompliant": pc.noncompliant if pc else 0,
                "exempt": pc.exempt if pc else 0,
                "unknown": pc.unknown if pc else 0,
            }
        )
    return result


def policy_list(*, queryset: QuerySet | None = None) -> QuerySet:
    qs = Policy.objects.all() if queryset is None else queryset
    return (
        qs.select_related("compliance", "git_repository")
        .prefetch_related("scope_groups", "scope_instances")
        .annotate(open_violations=Count("violations", filter=Q(violations__status=ViolationStatus.OPEN)))
        .order_by("name")
    )


def violation_list(*, queryset: QuerySet | None = None) -> QuerySet:
    qs = Violation.objects.all() if queryset is None else queryset
    return qs.select_related("instance", "exception")


def exception_list(*, queryset: QuerySet | None = None) -> QuerySet:
    qs = PolicyException.objects.all() if queryset is None else queryset
    return qs.select_related("policy", "created_by", "revoked_by").prefetch_related("scope_groups", "scope_instances")


def compliance_trend(*, days: int = 30, kind: str = SnapshotKind.FLEET) -> list[ComplianceSnapshot]:
    since = timezone.localdate() - timedelta(days=days)
    return list(ComplianceSnapshot.objects.filter(kind=kind, date__gte=since).order_by("date", "label"))


def trend_chart(*, days: int = 30) -> dict:
    """Chart.js config: the fleet's daily average over the last `days`."""
    points = compliance_trend(days=days)
    return {
        "type": "line",
        "data": {
            "labels": [p.date.isoformat() for p in points],
            "datasets": [
                {
                    "label": "Fleet average compliance (%)",
                    "data": [p.score for p in points],
                    "borderColor": "#2563eb",
                    "tension": 0.2,
                }
            ],
        },
        "options": {"scales": {"y": {"min": 0, "max": 100}}, "plugins": {"legend": {"display": False}}},
    }


def severity_chart(counts: dict) -> dict:
    return {
        "type": "doughnut",
        "data": {
            "labels": ["Critical", "Warning", "Info"],
            "datasets": [
                {
                    "data": [counts["critical"], counts["warning"], counts["info"]],
                    "backgroundColor": ["#dc2626", "#d97706", "#2563eb"],
                }
            ],
        },
        "options": {"plugins": {"legend": {"position": "bottom"}}},
    }


def instance_panel(instance: Instance, *, now=None, history: int = 20) -> dict:
    """Everything the server detail page shows about one instance's compliance, in a fixed number of queries."""
    now = now or timezone.now()
    standing = InstanceCompliance.objects.filter(instance=instance).first()
    current = list(Violation.objects.filter(instance=instance, status__in=CURRENT_STATUSES).select_related("exception"))
    current.sort(key=lambda v: (v.status != ViolationStatus.OPEN, SEVERITY_RANK[v.severity], v.policy_name))
    past = list(
        Violation.objects.filter(instance=instance, status=ViolationStatus.RESOLVED).order_by("-resolved_at")[:history]
    )
    group_ids = list(instance.groups.values_list("pk", flat=True))
    tags = [f"{k}={v}" for k, v in instance.tags.values_list("key", "value")]
    exceptions = [
        e
        for e in exception_list(queryset=PolicyException.objects.filter(revoked_at__isnull=True, expires_at__gt=now))
        if e.scope.matches(instance_id=instance.pk, group_ids=group_ids, tags=tags)
    ]
    states = standing.state_map if standing else {}
    policies = {p.pk: p for p in Policy.objects.filter(pk__in=[int(k) for k in states])}
    policy_states = sorted(
        (
            {"policy": policies[int(pid)], "state": PolicyState(state).label}
            for pid, state in states.items()
            if int(pid) in policies
        ),
        key=lambda r: (r["state"] == PolicyState.COMPLIANT.label, r["policy"].name),
    )
    return {
        "instance": instance,
        "standing": standing,
        "current": current,
        "history": past,
        "exceptions": exceptions,
        "policy_states": policy_states,
    }


def update_rule_timeliness(policy: Policy, *, now=None, days: int = 30) -> dict | None:
    """For an update_rules policy: the share of releases (to instances in scope, released in the last
    `days`) applied within the deadline. Pending releases past the deadline count as late; pending
    ones still within it do not count yet."""
    if policy.policy_type != PolicyType.UPDATE_RULES:
        return None
    now = now or timezone.now()
    deadlines = {}
    if policy.rules.get("os_deadline_hours"):
        deadlines[("os", "os")] = policy.rules["os_deadline_hours"]
    for app in policy.rules.get("apps", []):
        deadlines[("app", app["name"])] = app["deadline_hours"]
    records = ReleaseRecord.objects.filter(
        instance__in=instances_in_scope(policy.scope), released_at__gte=now - timedelta(days=days)
    ).filter(Q(kind="os") | Q(kind="app", name__in=[n for k, n in deadlines if k == "app"]))
    on_time = late = 0
    for kind, name, released, closed, outcome in records.values_list(
        "kind", "name", "released_at", "closed_at", "outcome"
    ):
        hours = deadlines.get((kind, "os" if kind == "os" else name))
        if hours is None or outcome == "withdrawn":
            continue
        deadline = released + timedelta(hours=hours)
        if outcome == "applied":
            on_time += closed <= deadline
            late += closed > deadline
        elif now > deadline:
            late += 1
    counted = on_time + late
    return {
        "on_time": on_time,
        "late": late,
        "share": scores.display(100 * on_time / counted) if counted else None,
        "days": days,
    }


def instance_compliance_on(instance: Instance, day) -> dict:
    """Was this instance compliant on `day`? From that day's snapshot, else reconstructed from violation history."""
    snap = InstanceSnapshot.objects.filter(instance=instance, date=day).first()
    if snap is not None:
        return {
            "date": day.isoformat(),
            "compliant": snap.compliant,
            "score": snap.score,
            "source": "snapshot",
            "failing_policy_ids": snap.failing_policy_ids,
            "stale": snap.stale,
        }
    tz = timezone.get_current_timezone()
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = start + timedelta(days=1)
    if instance.registered_at and instance.registered_at >= end:
        return {
            "date": day.isoformat(),
            "compliant": None,
            "score": None,
            "source": "not registered yet",
            "failing_policy_ids": [],
        }
    failing = (
        Violation.objects.filter(instance=instance, first_detected_at__lt=end)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=start))
        .exclude(status=ViolationStatus.EXEMPTED)
    )
    ids = sorted({pid for pid in failing.values_list("policy_id", flat=True) if pid})
    return {
        "date": day.isoformat(),
        "compliant": not ids,
        "score": None,
        "source": "violation history",
        "failing_policy_ids": ids,
    }


def instance_history(instance: Instance, *, days: int = 90) -> list[InstanceSnapshot]:
    since = timezone.localdate() - timedelta(days=days)
    return list(InstanceSnapshot.objects.filter(instance=instance, date__gte=since).order_by("date"))


def rule_choices() -> list[dict]:
    """[{"policy", "rules": [(rule_key, label)]}] for the exception form."""
    return [{"policy": p, "rules": evaluators.rule_keys(p.policy_type, p.rules)} for p in Policy.objects.all()]
