"""Deployment checks of this project's own settings (`manage.py check --deploy`)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def panel_url_check(app_configs, **kwargs):
    if not settings.PANEL_URL:
        return [
            Warning(
                "PANEL_URL is not set: links in notification e-mails are bare paths.",
                hint="Set PANEL_URL to the address users open, e.g. https://panel.example.com.",
                id="common.W001",
            )
        ]
    if not settings.PANEL_URL.startswith("https://"):
        return [Warning("PANEL_URL does not start with https://.", id="common.W002")]
    return []
