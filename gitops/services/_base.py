"""What the GitOps services share: the mirror's place, the license gate, enqueueing after commit."""

import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction

from fleet.licensing import plan_allows
from fleet.licensing_store import current_license_status

from ..models import Repository

logger = logging.getLogger("gitops.services")


def mirror_path(repository: Repository) -> Path:
    return Path(settings.VAR_DIR) / "gitops" / f"repository-{repository.pk}.git"


def actor_user(actor):
    """The User behind an actor (None for the system or a label such as "gitops:fleet-config")."""
    return actor if getattr(actor, "pk", None) else None


def licensed() -> bool:
    """Does the license in force include `gitops`? A downgraded panel stops driving the fleet from Git:
    syncs, previews, webhooks and heartbeat reconciles all ask this first."""
    return plan_allows(current_license_status().plan, "gitops")


def enqueue_sync(repository_id: int, trigger: str = "schedule", revision: str = "") -> None:
    from ..tasks import sync_repository

    def send():
        if revision:
            sync_repository.delay(repository_id, trigger, revision)
        else:
            sync_repository.delay(repository_id, trigger)

    transaction.on_commit(send)


def enqueue(task, *args) -> None:
    """Send a task after commit; a broker outage is logged, never raised into the request."""

    def send():
        try:
            task.delay(*args)
        except Exception:
            logger.warning("could not enqueue %s%s: broker unavailable", task.name, args)

    transaction.on_commit(send)
