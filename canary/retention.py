"""What the canary app prunes (common/retention.py)."""

from common.retention import register


@register("CANARY_POLL_RETENTION_DAYS")
def health_polls(cutoff):
    """Individual polls of deployments finished before the cutoff; their rounds (the per-round totals the
    chart and the decision came from) and the deployment itself stay."""
    from .models import HealthPoll

    return HealthPoll.objects.filter(deployment__finished_at__lt=cutoff)
