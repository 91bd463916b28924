from django.apps import AppConfig


class GitopsConfig(AppConfig):
    name = "gitops"
    verbose_name = "GitOps"

    def ready(self):
        from fleet.signals import instance_state_changed

        from . import receivers

        instance_state_changed.connect(receivers.reconcile_instance, dispatch_uid="gitops.reconcile_instance")
