from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from .choices import Phase
from .models import CanaryDeployment


def collect():
    by_phase = dict(CanaryDeployment.objects.values_list("phase").annotate(n=Count("pk")))
    deployments = GaugeMetricFamily("canary_deployments", "Canary deployments by phase", labels=["phase"])
    for phase in Phase.values:
        deployments.add_metric([phase], by_phase.get(phase, 0))
    yield deployments
