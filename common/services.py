import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import models, transaction
from django.utils import timezone

from .choices import ROLE_RANK, NotificationLevel, Role
from .exceptions import ApplicationError, ConflictError, NotFoundError
from .models import ApiToken, AuditEntry, Notification, User

logger = logging.getLogger(__name__)


def actor_label(actor) -> str:
    """How an actor reads in the audit log and in messages: a username, a label as given, or "system"."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return getattr(actor, "username", None) or str(actor)


def _audit_entry(actor, action: str, obj, details) -> AuditEntry:
    return AuditEntry(
        actor=actor if isinstance(actor, User) else None,
        actor_label=actor_label(actor)[:150],
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        details=details or {},
    )


def audit_log(*, actor, action: str, obj: models.Model | None = None, details: dict | None = None) -> AuditEntry:
    """Record a state-changing action. `actor` is a User, a label such as "agent:web-01", or None (system)."""
    entry = _audit_entry(actor, action, obj, details)
    entry.save()
    return entry


def audit_log_many(*, actor, action: str, entries: list[tuple[models.Model, dict]]) -> None:
    """The same action on many objects, in one INSERT (e.g. a sync that queues hundreds of commands)."""
    AuditEntry.objects.bulk_create(
        [_audit_entry(actor, action, obj, details) for obj, details in entries], batch_size=1000
    )


def users_with_role(role: str):
    """Active users holding `role` or a higher one (each role includes the ones before it), superusers
    too: the same people `User.has_role(role)` lets act."""
    ranks = [r for r, rank in ROLE_RANK.items() if rank >= ROLE_RANK[role]]
    return User.objects.filter(is_active=True).filter(models.Q(role__in=ranks) | models.Q(is_superuser=True))


def fleet_admins():
    return users_with_role(Role.ADMIN)


def notify_role(*, role: str, title: str, body: str = "", url: str = "", level: str = NotificationLevel.INFO) -> int:
    """Notify everyone who holds `role` (or a higher one) in-app and by email (after commit): for events
    such a person can act on, e.g. a canary step waiting for an operator's approval. Returns how many."""
    users = list(users_with_role(role))
    Notification.objects.bulk_create(
        [Notification(user=u, title=title[:200], body=body, url=url, level=level) for u in users]
    )
    recipients = [u.email for u in users if u.email]
    if recipients:

        def _send():
            try:
                send_mail(
                    f"[Fleet governance] {title}",
                    f"{body}\n\n{absolute_url(url)}".strip(),
                    settings.DEFAULT_FROM_EMAIL,
                    recipients,
                )
            except Exception:  # a mail outage must not undo the event being notified
                logger.exception("could not email notification %r", title)

        transaction.on_commit(_send)
    return len(users)


def notify_admins(*, title: str, body: str = "", url: str = "", level: str = NotificationLevel.INFO) -> int:
    """Notify every fleet administrator in-app and by email (after commit). Returns how many were notified."""
    return notify_role(role=Role.ADMIN, title=title, body=body, url=url, level=level)


def absolute_url(url: str) -> str:
    """A panel path as a link that works outside the panel (an e-mail): PANEL_URL in front of it."""
    if not url or not url.startswith("/") or url.startswith("//"):
        return url
    return f"{settings.PANEL_URL}{url}" if settings.PANEL_URL else url


def notifications_mark_read(*, user: User, ids: list[int] | None = None) -> int:
    qs = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(read_at=timezone.now())


@transaction.atomic
def user_create(*, actor, username: str, email: str, role: str, password: str) -> User:
    user = User(username=username, email=email, role=role)
    user.set_password(password)
    user.full_clean()
    user.save()
    audit_log(actor=actor, action="user.create", obj=user, details={"role": role})
    return user


@transaction.atomic
def user_update(*, actor, user: User, role: str, is_active: bool) -> User:
    """Change a user's role or active flag. Nobody locks themselves out (another admin has to do it),
    and the panel always keeps an active admin: the admins' rows are locked (SELECT … FOR UPDATE) while
    the check runs, so two admins demoting each other at once cannot both succeed."""
    problems = {}
    if user.pk == getattr(actor, "pk", None):
        if role != Role.ADMIN and not user.is_superuser:
            problems["role"] = ["You cannot remove your own admin role; ask another administrator."]
        if not is_active:
            problems["is_active"] = ["You cannot deactivate your own account."]
    if problems:
        raise ApplicationError.from_errors(problems)
    admins = set(fleet_admins().select_for_update().values_list("pk", flat=True))
    stays_admin = is_active and (role == Role.ADMIN or user.is_superuser)
    if user.pk in admins and not stays_admin and admins == {user.pk}:
        field = "is_active" if not is_active else "role"
        raise ApplicationError(
            f"{user.username} is the last active admin: make another user an admin first.", field=field
        )
    before = {"role": user.role, "is_active": user.is_active}
    user.role, user.is_active = role, is_active
    user.save(update_fields=["role", "is_active"])
    audit_log(
        actor=actor, action="user.update", obj=user, details={"before": before, "role": role, "is_active": is_active}
    )
    return user


@transaction.atomic
def user_unlock(*, actor, username: str) -> int:
    """Lift the sign-in lockout of `username`: forget its failed attempts from every address (axes).
    Returns how many (username, address) records were cleared; audited even when none were."""
    from axes.models import AccessAttempt

    _total, by_model = AccessAttempt.objects.filter(username=username).delete()
    cleared = by_model.get(AccessAttempt._meta.label, 0)
    user = User.objects.filter(username=username).first()
    audit_log(actor=actor, action="user.unlock", obj=user, details={"username": username, "cleared": cleared})
    return cleared


# --- API tokens ---------------------------------------------------------------------------------
# One per user, `gov_<key_id>_<secret>`; only SHA-256(secret) is stored, as for agent credentials. The
# secret has 256 bits of entropy, so a fast hash is safe and keeps every API request cheap. Audit
# entries name the user, never the key.

API_TOKEN_TOUCH_SECONDS = 60  # last_used_at is refreshed at most this often per token


def secret_hash(secret: str) -> str:
    """What the panel stores of a credential's secret (API tokens, agent credentials, registration
    tokens): SHA-256, enough for secrets of 192+ random bits; compare with hmac.compare_digest."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _api_token_new(user: User) -> str:
    """Store a new token for `user` (who has none) and return its key; not audited (test factories)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_id=key_id, secret_hash=secret_hash(secret))
    return f"gov_{key_id}_{secret}"


def _api_token_of(user: User) -> ApiToken | None:
    # Locking the user serialises two create/regenerate requests of one user (double submit, two tabs).
    User.objects.select_for_update().filter(pk=user.pk).first()
    return ApiToken.objects.filter(user=user).first()


def api_token_authenticate(key: str) -> ApiToken | None:
    """The token behind `key` (with its user loaded), or None. Constant-time comparison of the secret hash.
    The caller refuses inactive users (whose use is not recorded in last_used_at)."""
    try:
        prefix, key_id, secret = key.split("_", 2)
    except (AttributeError, ValueError):
        return None
    if prefix != "gov" or not key_id or not secret:
        return None
    token = ApiToken.objects.select_related("user").filter(key_id=key_id).first()
    if token is None or not hmac.compare_digest(token.secret_hash, secret_hash(secret)):
        return None
    now = timezone.now()
    due = token.last_used_at is None or now - token.last_used_at >= timedelta(seconds=API_TOKEN_TOUCH_SECONDS)
    if due and token.user.is_active:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def api_token_create(*, actor, user: User) -> str:
    """Give `user` an API token; returns its key, which the panel shows once and cannot show again."""
    if _api_token_of(user) is not None:
        raise ConflictError("There is already an API token; regenerate it to get a new key.")
    key = _api_token_new(user)
    audit_log(actor=actor, action="api_token.create", obj=user)
    return key


@transaction.atomic
def api_token_regenerate(*, actor, user: User) -> str:
    """Replace `user`'s API token with a new one; the old key stops working at once. Returns the new key."""
    old = _api_token_of(user)
    if old is None:
        raise NotFoundError("There is no API token to regenerate; create one instead.")
    old.delete()
    key = _api_token_new(user)
    audit_log(
        actor=actor, action="api_token.regenerate", obj=user, details={"replaced_created": old.created.isoformat()}
    )
    return key


@transaction.atomic
def api_token_revoke(*, actor, user: User) -> None:
    """Delete `user`'s API token: requests with it are refused from now on."""
    old = _api_token_of(user)
    if old is None:
        raise NotFoundError(f"There is no API token of {user.username} to revoke.")
    old.delete()
    audit_log(actor=actor, action="api_token.revoke", obj=user, details={"revoked_created": old.created.isoformat()})
