"""WSGI entry point (gunicorn config.wsgi, runserver through WSGI_APPLICATION).

Unchanged agent heartbeats are answered by the fast lane in front of Django; see fleet/agent/fastlane.py.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from fleet.agent.fastlane import HeartbeatFastLane  # noqa: E402 - needs the app registry ready

application = HeartbeatFastLane(django_application)
