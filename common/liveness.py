"""Liveness of the background processes: workers and beat leave a heartbeat row, pages and probes read it.

* A worker records itself when it is ready and then every LIVENESS_INTERVAL seconds from its own timer
  (a bootstep, `WorkerHeartbeat`), so it needs neither beat nor the broker to be seen.
* Beat records itself from its scheduler's tick (`LivenessScheduler`), at most every LIVENESS_INTERVAL
  seconds: seen means it is still scheduling, not only that the process exists.
* Each write is one UPDATE-or-INSERT of the (component, node) row; concurrent writers are different
  nodes, and a lost race on the first INSERT is retried as an UPDATE by the unique constraint.

A component is "stale" when its freshest row is older than LIVENESS_STALE_SECONDS, "unknown" before any.
Works the same on SQLite + the embedded broker and on PostgreSQL + Redis: it only needs the database.
"""

import logging
import os
import socket
import threading
import time

from celery import bootsteps
from celery.beat import PersistentScheduler
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection
from django.db.models import Max
from django.utils import timezone

logger = logging.getLogger(__name__)

COMPONENTS = ("worker", "beat")


def record(component: str, node: str) -> None:
    """Upsert this process's heartbeat. Never raises: a database hiccup must not stop a worker or beat."""
    from .models import ProcessHeartbeat

    if not connection.in_atomic_block:
        close_old_connections()  # long-lived threads: drop a connection the database closed
    now, pid = timezone.now(), os.getpid()
    try:
        updated = ProcessHeartbeat.objects.filter(component=component, node=node).update(last_seen=now, pid=pid)
        if not updated:
            try:
                ProcessHeartbeat.objects.create(component=component, node=node, pid=pid, last_seen=now)
            except IntegrityError:
                ProcessHeartbeat.objects.filter(component=component, node=node).update(last_seen=now, pid=pid)
    except Exception as exc:  # noqa: BLE001 - logged on one line; the next heartbeat retries
        logger.warning("Could not record the %s heartbeat: %s", component, exc)


def ages() -> dict[str, float | None]:
    """Seconds since each component was last seen (None: never). One query."""
    from .models import ProcessHeartbeat

    last = dict(
        ProcessHeartbeat.objects.filter(component__in=COMPONENTS)
        .values("component")
        .annotate(last=Max("last_seen"))
        .values_list("component", "last")
    )
    now = timezone.now()
    return {c: (now - last[c]).total_seconds() if last.get(c) else None for c in COMPONENTS}


def state(age: float | None) -> str:
    if age is None:
        return "unknown"
    return "ok" if age <= settings.LIVENESS_STALE_SECONDS else "stale"


def down_components() -> list[tuple[str, float | None]]:
    """The banner's list: (component, age) of those stale or never seen."""
    return [(c, age) for c, age in ages().items() if state(age) != "ok"]


# --- /healthz ---------------------------------------------------------------------------------


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_broker() -> None:
    """Raises if the broker cannot be reached (embedded: its folder cannot be written)."""
    from celery import current_app

    from . import broker

    url = settings.CELERY_BROKER_URL
    if url.startswith(f"{broker.ALIAS}://"):
        broker.check_writable(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder"])
        return
    with current_app.connection_for_write(url=url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)


def health_report() -> tuple[int, dict]:
    """(HTTP status, body) for /healthz: 503 when the database or the broker is down, else 200 with
    `status` "ok", or "degraded" when a worker or beat is stale (the web tier itself is fine)."""
    components = {}
    for name, check in (("database", check_database), ("broker", check_broker)):
        try:
            check()
            components[name] = {"status": "ok"}
        except Exception:  # noqa: BLE001 - reported as down; the detail (URLs, hosts) stays in the log
            logger.warning("healthz: %s check failed", name, exc_info=True)
            components[name] = {"status": "down"}
    if components["database"]["status"] == "ok":
        for name, age in ages().items():
            components[name] = {"status": state(age), "last_seen_seconds": None if age is None else round(age, 1)}
    else:
        components.update({name: {"status": "unknown", "last_seen_seconds": None} for name in COMPONENTS})
    if any(components[c]["status"] == "down" for c in ("database", "broker")):
        return 503, {"status": "down", "components": components}
    degraded = any(components[c]["status"] != "ok" for c in COMPONENTS)
    return 200, {"status": "degraded" if degraded else "ok", "components": components}


def collect():
    """/metrics: seconds since each background component was last seen (absent: never seen)."""
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(
        "panel_component_last_seen_seconds",
        "Seconds since the component last recorded its heartbeat",
        labels=["component"],
    )
    for component, age in ages().items():
        if age is not None:
            family.add_metric([component], round(age, 3))
    yield family


# --- writers ----------------------------------------------------------------------------------


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Worker bootstep: a heartbeat at start, then every LIVENESS_INTERVAL seconds from the worker's timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        node = worker.hostname
        threading.Thread(target=record, args=("worker", node), daemon=True).start()  # not on the start path
        self.tref = worker.timer.call_repeatedly(settings.LIVENESS_INTERVAL, record, ("worker", node), priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()


class LivenessScheduler(PersistentScheduler):
    """Celery's default scheduler; each tick also records beat's heartbeat (at most every LIVENESS_INTERVAL s)."""

    _last_beat = 0.0

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now - self._last_beat >= settings.LIVENESS_INTERVAL:
            self._last_beat = now
            record("beat", socket.gethostname())
        return min(super().tick(*args, **kwargs), settings.LIVENESS_INTERVAL)
