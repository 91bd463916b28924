from django.db.models import Avg, Count

from .choices import Severity, ViolationStatus
from .models import InstanceCompliance, Violation


def collect():
    open_by_severity = dict(
        Violation.objects.filter(status=ViolationStatus.OPEN).values_list("severity").annotate(n=Count("pk"))
    )
    average = InstanceCompliance.objects.filter(applicable__gt=0, stale=False).aggregate(a=Avg("score"))["a"]
    return [
        (
            "governance_open_violations",
            "Open (not exempted) violations by severity",
            "gauge",
            [({"severity": s}, open_by_severity.get(s, 0)) for s in Severity.values],
        ),
        (
            "governance_fleet_compliance_score",
            "Average compliance score of scored instances (percent)",
            "gauge",
            [({}, round(average, 2) if average is not None else "NaN")],
        ),
    ]
