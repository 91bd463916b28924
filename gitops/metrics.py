from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .choices import ConflictStatus, SyncStatus
from .models import Conflict, SyncRun


def collect():
    runs = dict(SyncRun.objects.values_list("status").annotate(n=Count("pk")))
    # Exposed as gitops_sync_runs_total (prometheus_client adds the counter suffix).
    sync_runs = CounterMetricFamily("gitops_sync_runs", "GitOps sync runs by result", labels=["status"])
    for status in SyncStatus.values:
        sync_runs.add_metric([status], runs.get(status, 0))
    yield sync_runs
    yield GaugeMetricFamily(
        "gitops_open_conflicts",
        "Conflicts waiting for an admin",
        value=Conflict.objects.filter(status=ConflictStatus.OPEN).count(),
    )
