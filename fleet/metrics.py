from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from .choices import InstanceStatus, RunStatus
from .models import CommandRun, Instance


def collect():
    by_status = dict(Instance.objects.values_list("status").annotate(n=Count("pk")))
    runs = dict(
        CommandRun.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING])
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    yield GaugeMetricFamily("fleet_instances", "Registered instances", value=sum(by_status.values()))
    instances = GaugeMetricFamily("fleet_instances_by_status", "Instances by status", labels=["status"])
    for status in InstanceStatus.values:
        instances.add_metric([status], by_status.get(status, 0))
    yield instances
    queue = GaugeMetricFamily("fleet_command_queue_depth", "Command runs not finished", labels=["status"])
    for status in (RunStatus.PENDING, RunStatus.RUNNING):
        queue.add_metric([status], runs.get(status, 0))
    yield queue
