"""Registration: tokens, agents registering with them, and agent credentials."""

import hmac
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.exceptions import ApplicationError
from common.services import audit_log, secret_hash
from fleet.choices import InstanceStatus
from fleet.models import Instance, RegistrationToken, TokenUse
from fleet.scopes import parse_tag_filter

from .inventory import tags_get_or_create
from .licenses import license_instance_limit

logger = logging.getLogger(__name__)


def _new_agent_credential() -> tuple[str, str, str]:
    """A fresh agent credential: (key id, hash of the secret to store, the credential to hand out once)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return key_id, secret_hash(secret), f"{key_id}.{secret}"


@transaction.atomic
def registration_token_create(
    *, actor, name: str, max_uses: int | None = None, expires_at=None, groups=(), tags=()
) -> tuple[RegistrationToken, str]:
    """Create a token; returns it with the plaintext, which is shown once and never stored."""
    if max_uses is not None and max_uses < 1:
        raise ApplicationError("The usage limit must be at least 1 (or empty for unlimited).")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry date must be in the future.")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    token = RegistrationToken.objects.create(
        name=name,
        key_id=key_id,
        secret_hash=secret_hash(secret),
        max_uses=max_uses,
        expires_at=expires_at,
        created_by=actor if getattr(actor, "pk", None) else None,
        tags=parse_tag_filter(list(tags)),
    )
    token.groups.set(groups)
    audit_log(actor=actor, action="registration_token.create", obj=token, details={"max_uses": max_uses})
    return token, f"reg_{key_id}_{secret}"


@transaction.atomic
def registration_token_revoke(*, actor, token: RegistrationToken) -> RegistrationToken:
    if token.revoked_at:
        raise ApplicationError("This token is already revoked.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_log(actor=actor, action="registration_token.revoke", obj=token)
    return token


def _find_registration_token(plaintext: str) -> tuple[RegistrationToken | None, str]:
    try:
        prefix, key_id, secret = plaintext.split("_", 2)
    except (AttributeError, ValueError):
        return None, ""
    if prefix != "reg":
        return None, ""
    token = RegistrationToken.objects.select_for_update().filter(key_id=key_id).first()
    if token is None or not hmac.compare_digest(token.secret_hash, secret_hash(secret)):
        return None, ""
    return token, secret


def agent_register(
    *,
    token: str,
    name: str,
    hostname: str = "",
    address: str = "",
    os_version: str = "",
    remote_addr: str | None = None,
) -> tuple[Instance, str]:
    """Validate a registration token and create the instance; returns it and its agent credential.

    A rejected attempt on a known token is still written to the token's usage history.

    A retry is answered, not refused: if the agent's first attempt registered the instance but the reply
    was lost, the same token and name within REGISTRATION_RETRY_SECONDS, before the instance's first
    heartbeat, get a fresh credential for that instance (the lost one stops working) and use the
    token no further.
    """
    now = timezone.now()
    with transaction.atomic():
        record, _secret = _find_registration_token(token)
        if record is None:
            raise ApplicationError("The registration token is not valid.", extra={"code": "invalid_token"})
        retried = _registration_retried(record, name, now)
        if retried is not None:
            return _registration_repeat(record, retried, remote_addr)
        reason = record.invalid_reason(now)
        if reason is None and Instance.objects.filter(name=name).exists():
            reason = f"An instance named '{name}' is already registered."
        if reason is None:
            limit = license_instance_limit()
            if limit is not None and Instance.objects.count() >= limit:
                reason = f"The license allows {limit} instances and all are in use."
        if reason is None:
            key_id, stored_hash, credential = _new_agent_credential()
            instance = Instance.objects.create(
                name=name,
                hostname=hostname,
                address=address,
                os_version=os_version,
                agent_key_id=key_id,
                agent_secret_hash=stored_hash,
            )
            instance.groups.set(record.groups.all())
            instance.tags.set(tags_get_or_create(record.tags))
            RegistrationToken.objects.filter(pk=record.pk).update(use_count=record.use_count + 1)
            TokenUse.objects.create(token=record, instance=instance, remote_addr=remote_addr)
            audit_log(actor=f"agent:{name}", action="instance.register", obj=instance, details={"token": record.name})
            logger.info("instance %s registered with token %r from %s", name, record.name, remote_addr or "?")
            return instance, credential
    # Outside the failed branch's transaction, so the history row survives the error response.
    TokenUse.objects.create(token=record, remote_addr=remote_addr, accepted=False, reason=reason[:200])
    raise ApplicationError(reason, extra={"code": "token_rejected"})


def _registration_retried(record: RegistrationToken, name: str, now) -> Instance | None:
    """The instance this token registered under `name` moments ago and that has not been heard from
    since, i.e. an agent repeating a registration whose reply it never got; None otherwise."""
    if record.invalid_reason(now, count_uses=False) is not None:
        return None
    window = timedelta(seconds=settings.REGISTRATION_RETRY_SECONDS)
    instance = Instance.objects.filter(
        name=name, status=InstanceStatus.PENDING, last_seen_at__isnull=True, registered_at__gte=now - window
    ).first()
    if instance is None or not TokenUse.objects.filter(token=record, instance=instance, accepted=True).exists():
        return None
    return instance


def _registration_repeat(record: RegistrationToken, instance: Instance, remote_addr) -> tuple[Instance, str]:
    credential = _replace_agent_credential(instance)
    TokenUse.objects.create(
        token=record, instance=instance, remote_addr=remote_addr, reason="repeated registration: new credential"
    )
    audit_log(
        actor=f"agent:{instance.name}", action="instance.register_repeat", obj=instance, details={"token": record.name}
    )
    logger.info(
        "instance %s repeated its registration with token %r from %s", instance.name, record.name, remote_addr or "?"
    )
    return instance, credential


# What agent requests need up front (a heartbeat compares state_hash/status/agent_version); other
# fields load lazily if a caller reads them. Fewer columns keep the hottest query cheap.
AGENT_AUTH_FIELDS = (
    "id",
    "name",
    "status",
    "state_hash",
    "apps_hash",
    "heartbeat_digest",
    "agent_version",
    "agent_secret_hash",
)


def agent_authenticate(credential: str) -> Instance | None:
    """The instance owning this credential, or None. Constant-time comparison of the secret hash."""
    try:
        key_id, secret = credential.split(".", 1)
    except (AttributeError, ValueError):
        return None
    # Raw SQL on the hottest query: the ORM's compilation would cost more than the query itself.
    table = Instance._meta.db_table
    sql = f'SELECT {", ".join(AGENT_AUTH_FIELDS)} FROM "{table}" WHERE "agent_key_id" = %s'  # noqa: S608 - constants
    with connection.cursor() as cursor:
        cursor.execute(sql, [key_id])
        row = cursor.fetchone()
    if row is None:
        return None
    instance = Instance.from_db(connection.alias, AGENT_AUTH_FIELDS, row)
    if not hmac.compare_digest(instance.agent_secret_hash, secret_hash(secret)):
        return None
    return instance


def agent_credential_rotate(*, actor, instance: Instance) -> str:
    credential = _replace_agent_credential(instance)
    audit_log(actor=actor, action="instance.rotate_credential", obj=instance)
    return credential


def _replace_agent_credential(instance: Instance) -> str:
    """Give the instance a new credential (the old one stops working) and return it, to hand out once."""
    key_id, stored_hash, credential = _new_agent_credential()
    Instance.objects.filter(pk=instance.pk).update(agent_key_id=key_id, agent_secret_hash=stored_hash)
    instance.agent_key_id = key_id
    return credential
