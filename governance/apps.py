from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self):
        from django.db.models.signals import pre_delete

        from fleet.models import Instance
        from fleet.signals import command_run_finished, instance_state_changed, instances_went_offline

        from . import receivers
        from .remediation import receivers as remediation_receivers

        instance_state_changed.connect(receivers.on_instance_state_changed, dispatch_uid="governance.state_changed")
        instances_went_offline.connect(receivers.on_instances_went_offline, dispatch_uid="governance.went_offline")
        command_run_finished.connect(
            remediation_receivers.on_command_run_finished, dispatch_uid="governance.remediation.run_finished"
        )
        pre_delete.connect(receivers.on_instance_deleting, sender=Instance, dispatch_uid="governance.instance_deleting")
