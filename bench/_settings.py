"""config.settings as production runs them, except that static files are referred to by name, so the
pages bench/heartbeat.py times need no build (deploy/build.sh) before each run."""

from config.settings import *  # noqa: F403
from config.settings import STORAGES

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
