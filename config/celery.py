import os

from celery import Celery
from celery.signals import worker_init

from common import broker, liveness

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
broker.register()  # atomicfs://, the embedded broker, before any connection is made

app = Celery("governance_panel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(liveness.WorkerHeartbeat)


def warm_up() -> None:
    """Load the URLconf now rather than inside the first task that builds a link (an evaluation's
    notification, say): its first `reverse()` imports every view module, about 0.3 s."""
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 - populating the resolver is the point


@worker_init.connect
def _warm_up_worker(**_kwargs):
    warm_up()  # in the parent, before the pool forks: every child starts warm
