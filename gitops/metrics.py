from django.db.models import Count

from .choices import ConflictStatus, SyncStatus
from .models import Conflict, SyncRun


def collect():
    runs = dict(SyncRun.objects.values_list("status").annotate(n=Count("pk")))
    open_conflicts = Conflict.objects.filter(status=ConflictStatus.OPEN).count()
    return [
        (
            "gitops_sync_runs_total",
            "GitOps sync runs by result",
            "counter",
            [({"status": s}, runs.get(s, 0)) for s in SyncStatus.values],
        ),
        ("gitops_open_conflicts", "Conflicts waiting for an admin", "gauge", [({}, open_conflicts)]),
    ]
