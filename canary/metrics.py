from django.db.models import Count

from .choices import Phase
from .models import CanaryDeployment


def collect():
    by_phase = dict(CanaryDeployment.objects.values_list("phase").annotate(n=Count("pk")))
    return [
        (
            "canary_deployments",
            "Canary deployments by phase",
            "gauge",
            [({"phase": p}, by_phase.get(p, 0)) for p in Phase.values],
        )
    ]
