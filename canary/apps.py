from django.apps import AppConfig


class CanaryConfig(AppConfig):
    name = "canary"
    verbose_name = "Canary deployments"

    def ready(self):
        from fleet.signals import command_run_finished

        from . import receivers

        command_run_finished.connect(receivers.on_command_run_finished, dispatch_uid="canary.command_run_finished")
