"""Push webhooks: the one GitOps endpoint authenticated by its signature instead of a user."""

import logging

from django.db import transaction
from django.utils import timezone

from common.exceptions import ApplicationError
from common.services import audit_log

from .. import crypto
from ..choices import ConflictStatus
from ..models import Repository
from ..webhooks import WebhookError, detect, is_push, parse, verify
from ._base import enqueue_sync

logger = logging.getLogger("gitops.webhooks")


class WebhookForbidden(ApplicationError):
    status_code = 403
    code = "invalid_signature"


@transaction.atomic
def webhook_receive(*, repository_id: int, headers, body: bytes, content_type: str = "") -> dict:
    """Verify a forge's push webhook with the repository's secret and queue a sync of the tracked branch.

    A missing repository, an unknown forge and a wrong or missing signature are the same 403. A push of
    another branch, a tag or a non-push event is answered and ignored; a repository pinned to a revision
    follows only pushes of that tag (a pinned commit never moves). Replaying a delivery is harmless:
    it queues one more sync of the same head, which finds the commit in force and changes nothing.
    """
    repo = Repository.objects.filter(pk=repository_id).first()
    try:
        if repo is None:
            raise WebhookError("Unknown repository or wrong signature.", forbidden=True)
        forge = detect(headers)
        secret = crypto.decrypt(repo.webhook_secret_encrypted) if repo.webhook_secret_encrypted else ""
        verify(forge, headers, body, secret)
    except (WebhookError, crypto.SecretUnreadable) as exc:
        logger.info("GitOps webhook for repository %s refused: %s", repository_id, exc)
        raise WebhookForbidden("The webhook signature does not match this repository's secret.") from None
    try:
        push = parse(forge, headers, body, content_type)
    except WebhookError as exc:
        raise ApplicationError(str(exc)) from None
    answer = {"repository": repo.name, "forge": forge, "event": push.event, "ref": push.ref}
    if not is_push(push):
        return {**answer, "status": "ignored", "reason": f"'{push.event}' is not a push event."}
    # What a sync reads: the tracked branch, or the pinned revision (a tag moved by a push is followed).
    wanted = f"refs/tags/{repo.revision}" if repo.revision else f"refs/heads/{repo.branch}"
    if push.ref != wanted:
        reason = (
            f"This repository is pinned to '{repo.revision}': clear the pinned revision to follow branch pushes."
            if repo.revision
            else f"This repository tracks branch '{repo.branch}'."
        )
        return {**answer, "status": "ignored", "reason": reason}
    if not repo.host_key or repo.conflicts.filter(status=ConflictStatus.OPEN).exists():
        return {**answer, "status": "ignored", "reason": "The repository is waiting for a host key or paused."}
    Repository.objects.filter(pk=repo.pk).update(next_sync_at=timezone.now())
    audit_log(
        actor=f"webhook:{forge}",
        action="gitops.repository.webhook",
        obj=repo,
        details={"ref": push.ref, "after": push.after, "delivery": push.delivery},
    )
    enqueue_sync(repo.pk, trigger=f"webhook:{forge}")
    return {**answer, "status": "queued", "after": push.after}
