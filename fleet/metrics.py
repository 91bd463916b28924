from django.db.models import Count

from .choices import InstanceStatus, RunStatus
from .models import CommandRun, Instance


def collect():
    by_status = dict(Instance.objects.values_list("status").annotate(n=Count("pk")))
    runs = dict(
        CommandRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING])
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    return [
        ("fleet_instances", "Registered instances", "gauge", [({}, sum(by_status.values()))]),
        (
            "fleet_instances_by_status",
            "Instances by status",
            "gauge",
            [({"status": s}, by_status.get(s, 0)) for s in InstanceStatus.values],
        ),
        (
            "fleet_command_queue_depth",
            "Command runs not finished",
            "gauge",
            [({"status": s}, runs.get(s, 0)) for s in (RunStatus.PENDING, RunStatus.RUNNING)],
        ),
    ]
