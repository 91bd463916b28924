"""Signal receivers: each only calls a service."""

from .services import scheduling


def on_command_run_finished(sender, run_id, status, **kwargs):
    scheduling.canary_run_finished(run_id=run_id)
