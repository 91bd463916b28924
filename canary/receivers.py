"""Signal receivers: each only calls a service."""

from . import services


def on_command_run_finished(sender, run_id, status, **kwargs):
    services.canary_run_finished(run_id=run_id)
