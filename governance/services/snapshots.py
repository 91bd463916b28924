"""Daily compliance snapshots (fleet, groups, policies, every instance)."""

from datetime import date as date_cls
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Count
from django.utils import timezone

from .. import scores
from ..choices import PolicyState, SnapshotKind
from ..models import ComplianceSnapshot, InstanceCompliance, InstanceSnapshot, PolicyCompliance


def snapshot_day(now=None) -> date_cls:
    """The day a snapshot taken at `now` belongs to, in settings.TIME_ZONE (the beat's CELERY_TIMEZONE too)."""
    return (now or timezone.now()).astimezone(ZoneInfo(settings.TIME_ZONE)).date()


@transaction.atomic
def compliance_snapshot_take(*, day: date_cls | None = None) -> dict:
    """Record today's fleet, group and policy scores, and every instance's standing. Re-running replaces the day."""
    day = day or snapshot_day()
    ComplianceSnapshot.objects.filter(date=day).delete()
    InstanceSnapshot.objects.filter(date=day).delete()
    scored = InstanceCompliance.objects.filter(score__isnull=False)
    fleet = scored.aggregate(avg=Avg("score"), n=Count("pk"))
    rows = [
        ComplianceSnapshot(
            date=day, kind=SnapshotKind.FLEET, label="Fleet", score=_round(fleet["avg"]), instances=fleet["n"]
        )
    ]
    for group_id, name, avg, n in (
        scored.filter(instance__groups__isnull=False)
        .values_list("instance__groups", "instance__groups__name")
        .annotate(avg=Avg("score"), n=Count("pk"))
        .order_by()
    ):
        rows.append(
            ComplianceSnapshot(
                date=day, kind=SnapshotKind.GROUP, group_id=group_id, label=name, score=_round(avg), instances=n
            )
        )
    for pc in PolicyCompliance.objects.select_related("policy"):
        rows.append(
            ComplianceSnapshot(
                date=day,
                kind=SnapshotKind.POLICY,
                policy_id=pc.policy_id,
                label=pc.policy.name,
                score=pc.score,
                instances=pc.applicable,
            )
        )
    ComplianceSnapshot.objects.bulk_create(rows)
    per_instance = [
        InstanceSnapshot(
            date=day,
            instance_id=c["instance_id"],
            score=c["score"],
            met=c["met"],
            applicable=c["applicable"],
            stale=c["stale"],
            failing_policy_ids=sorted(
                int(pid)
                for pid, s in InstanceCompliance.decode_states(c["states"]).items()
                if s == PolicyState.NONCOMPLIANT
            ),
        )
        for c in InstanceCompliance.objects.values("instance_id", "score", "met", "applicable", "stale", "states")
    ]
    InstanceSnapshot.objects.bulk_create(per_instance, batch_size=2000)
    return {"date": day.isoformat(), "fleet": rows[0].score, "groups": len(rows) - 1, "instances": len(per_instance)}


def _round(value):
    return scores.display(value)
