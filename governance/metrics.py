from django.db.models import Avg, Count
from prometheus_client.core import GaugeMetricFamily

from .choices import Severity, ViolationStatus
from .models import InstanceCompliance, Violation


def collect():
    open_by_severity = dict(
        Violation.objects.filter(status=ViolationStatus.OPEN).values_list("severity").annotate(n=Count("pk"))
    )
    average = InstanceCompliance.objects.filter(applicable__gt=0, stale=False).aggregate(a=Avg("score"))["a"]
    violations = GaugeMetricFamily(
        "governance_open_violations", "Open (not exempted) violations by severity", labels=["severity"]
    )
    for severity in Severity.values:
        violations.add_metric([severity], open_by_severity.get(severity, 0))
    yield violations
    yield GaugeMetricFamily(
        "governance_fleet_compliance_score",
        "Average compliance score of scored instances (percent)",
        value=round(average, 2) if average is not None else float("nan"),
    )
