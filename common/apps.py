from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Users, audit and notifications"
