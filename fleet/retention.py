"""What the fleet app prunes (common/retention.py)."""

from django.db.models import Exists, OuterRef

from common.retention import register


@register("COMMAND_RETENTION_DAYS")
def finished_commands(cutoff):
    """Commands created before the cutoff whose every run has finished, with their runs (cascade)."""
    from .choices import FINISHED_RUN_STATUSES
    from .models import Command, CommandRun

    unfinished = CommandRun.objects.filter(command=OuterRef("pk")).exclude(status__in=FINISHED_RUN_STATUSES)
    return Command.objects.filter(created__lt=cutoff).filter(~Exists(unfinished))
