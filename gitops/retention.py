"""What GitOps prunes (common/retention.py)."""

from django.db.models import OuterRef, Subquery

from common.retention import register

KEEP_LATEST = 20  # per repository, whatever their age: the recent history of a quiet repository stays


@register("GITOPS_RUN_RETENTION_DAYS")
def sync_runs(cutoff):
    """Finished sync runs started before the cutoff, except each repository's latest KEEP_LATEST."""
    from .models import SyncRun

    latest = SyncRun.objects.filter(repository=OuterRef("repository")).order_by("-started_at", "-id")
    kept_from = Subquery(latest.values("started_at")[KEEP_LATEST - 1 : KEEP_LATEST])
    # A repository with fewer runs gives NULL, and `started_at < NULL` keeps them all.
    return SyncRun.objects.filter(started_at__lt=cutoff, finished_at__isnull=False).filter(started_at__lt=kept_from)
