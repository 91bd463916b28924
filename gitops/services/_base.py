"""What the GitOps services share: the mirror's place, the license gate, enqueueing after commit."""

import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction

from ..models import Repository

logger = logging.getLogger("gitops.services")


def mirror_path(repository: Repository) -> Path:
    return Path(settings.VAR_DIR) / "gitops" / f"repository-{repository.pk}.git"


def actor_user(actor):
    """The User behind an actor (None for the system or a label such as "gitops:fleet-config")."""
    return actor if getattr(actor, "pk", None) else None


# The license feature. A downgraded panel stops driving the fleet from Git: syncs, previews, webhooks
# and heartbeat reconciles all ask fleet.licensing_store.feature_licensed(FEATURE) first.
FEATURE = "gitops"


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
