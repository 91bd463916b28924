from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Users, audit and notifications"

    def ready(self):
        from . import auth  # noqa: F401  (connects the login-failure counter)
