from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Users, audit and notifications"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deployment checks)
