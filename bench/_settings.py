"""config.settings as production runs them, except that static files are referred to by name: the pages
bench/heartbeat.py times need no collectstatic manifest (collectstatic stops on a source map the
vendored Bootstrap CSS names but does not ship)."""

from config.settings import *  # noqa: F403
from config.settings import STORAGES

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
