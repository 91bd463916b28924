"""Push webhooks of GitHub, GitLab and Gitea: which forge sent it, is it signed with the repository's
secret, and which branch moved. Pure logic: no ORM, no network.

    GitHub  X-GitHub-Event: push   X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body, hex>
    GitLab  X-Gitlab-Event: Push Hook   X-Gitlab-Token: <the secret itself>
    Gitea   X-Gitea-Event: push    X-Gitea-Signature: <HMAC-SHA256 of the body, hex>
All three send JSON with `ref` ("refs/heads/main") and `after` (the new head).
"""

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from common.api.parsers import HostileJSON, parse_json

from .choices import Forge


class WebhookError(Exception):
    """Not a push this panel can act on; `forbidden` when the signature is missing or wrong."""

    def __init__(self, message: str, *, forbidden: bool = False):
        super().__init__(message)
        self.forbidden = forbidden


@dataclass(frozen=True)
class Push:
    forge: str
    event: str
    ref: str
    after: str
    delivery: str

    @property
    def branch(self) -> str | None:
        return self.ref[len("refs/heads/") :] if self.ref.startswith("refs/heads/") else None


def _header(headers, name: str) -> str:
    return headers.get(name) or ""


def detect(headers) -> str:
    """The forge, from its event header. Gitea also sends GitHub's headers, so it is asked first."""
    if _header(headers, "X-Gitea-Event"):
        return Forge.GITEA
    if _header(headers, "X-Gitlab-Event"):
        return Forge.GITLAB
    if _header(headers, "X-GitHub-Event"):
        return Forge.GITHUB
    raise WebhookError("Not a GitHub, GitLab or Gitea webhook (no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event).")


def _hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(forge: str, headers, body: bytes, secret: str) -> None:
    """Raise WebhookError(forbidden=True) unless the request carries the secret's signature."""
    if not secret:
        raise WebhookError("This repository has no webhook secret: create one on its page.", forbidden=True)
    if forge == Forge.GITHUB:
        given, expected = _header(headers, "X-Hub-Signature-256"), "sha256=" + _hmac(secret, body)
    elif forge == Forge.GITEA:
        given, expected = _header(headers, "X-Gitea-Signature"), _hmac(secret, body)
    else:
        given, expected = _header(headers, "X-Gitlab-Token"), secret
    if not given or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise WebhookError("The webhook signature does not match this repository's secret.", forbidden=True)


def parse(forge: str, headers, body: bytes, content_type: str = "") -> Push:
    """The push described by a verified request. Raises WebhookError for a body that is not one."""
    event = _header(headers, {"github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event", "gitea": "X-Gitea-Event"}[forge])
    delivery = (
        _header(headers, "X-GitHub-Delivery")
        or _header(headers, "X-Gitea-Delivery")
        or _header(headers, "X-Gitlab-Event-UUID")
    )
    raw = body
    if content_type.startswith("application/x-www-form-urlencoded"):  # GitHub's optional form encoding
        raw = (parse_qs(body.decode("utf-8", "replace")).get("payload") or [""])[0].encode()
    try:
        payload = parse_json(raw) if raw else {}
    except HostileJSON as exc:
        raise WebhookError(f"The webhook body is not JSON this panel accepts: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookError("The webhook body must be a JSON object.")
    ref, after = payload.get("ref"), payload.get("after")
    return Push(
        forge=forge,
        event=event[:50],
        ref=ref[:300] if isinstance(ref, str) else "",
        after=after[:64] if isinstance(after, str) else "",
        delivery=delivery[:100],
    )


def is_push(push: Push) -> bool:
    return push.event.lower() in ("push", "push hook", "tag push hook")  # GitLab names tag pushes apart
