"""Signals other apps listen to; fleet never imports them. Receivers only call a service."""

from django.dispatch import Signal

# Sent after commit when a heartbeat changed an instance's reported state. kwargs: instance_id
instance_state_changed = Signal()
# Sent when a command run reaches completed or failed. kwargs: run_id, status
command_run_finished = Signal()
# Sent when instances go offline. kwargs: instance_ids
instances_went_offline = Signal()
