import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init

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


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender=None, **_kwargs):
    """Around each task what Django does around each request: drop a connection that is broken or
    older than CONN_MAX_AGE, and re-arm its health check. (Celery would otherwise open a new one for
    every task; see CELERY_DB_REUSE_MAX in settings.) Not for a task run eagerly inside the caller's
    transaction, as Celery's own fixup."""
    from django.db import close_old_connections

    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()
