"""What governance prunes (common/retention.py). Open violations and the fleet-wide daily snapshots
(one row a day) are never pruned."""

from common.retention import register


@register("VIOLATION_RETENTION_DAYS")
def resolved_violations(cutoff):
    """Violations resolved before the cutoff (open and exempted ones are current and stay)."""
    from .choices import ViolationStatus
    from .models import Violation

    return Violation.objects.filter(status=ViolationStatus.RESOLVED, resolved_at__lt=cutoff)


@register("SNAPSHOT_RETENTION_DAYS")
def instance_snapshots(cutoff):
    """Per-instance daily compliance, one row per instance per day."""
    from .models import InstanceSnapshot

    return InstanceSnapshot.objects.filter(date__lt=cutoff.date())
