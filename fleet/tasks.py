from celery import shared_task

from . import services


@shared_task
def mark_offline_instances():
    return len(services.instances_mark_offline())


@shared_task
def expire_command_runs():
    return services.command_runs_expire()
