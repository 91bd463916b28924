import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import models, transaction
from django.utils import timezone

from .choices import NotificationLevel, Role
from .models import AuditEntry, Notification, User

logger = logging.getLogger(__name__)


def _actor_label(actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return getattr(actor, "username", None) or str(actor)


def _audit_entry(actor, action: str, obj, details) -> AuditEntry:
    return AuditEntry(
        actor=actor if isinstance(actor, User) else None,
        actor_label=_actor_label(actor)[:150],
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


def fleet_admins():
    return User.objects.filter(is_active=True).filter(models.Q(role=Role.ADMIN) | models.Q(is_superuser=True))


def notify_admins(*, title: str, body: str = "", url: str = "", level: str = NotificationLevel.INFO) -> int:
    """Notify every fleet administrator in-app and by email (after commit). Returns how many were notified."""
    admins = list(fleet_admins())
    Notification.objects.bulk_create(
        [Notification(user=u, title=title[:200], body=body, url=url, level=level) for u in admins]
    )
    recipients = [u.email for u in admins if u.email]
    if recipients:

        def _send():
            try:
                send_mail(
                    f"[Fleet governance] {title}", f"{body}\n\n{url}".strip(), settings.DEFAULT_FROM_EMAIL, recipients
                )
            except Exception:  # a mail outage must not undo the event being notified
                logger.exception("could not email notification %r", title)

        transaction.on_commit(_send)
    return len(admins)


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
    before = {"role": user.role, "is_active": user.is_active}
    user.role, user.is_active = role, is_active
    user.save(update_fields=["role", "is_active"])
    audit_log(
        actor=actor, action="user.update", obj=user, details={"before": before, "role": role, "is_active": is_active}
    )
    return user
