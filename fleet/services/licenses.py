"""Licenses: uploading one, and the instance limit registration enforces."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.exceptions import ApplicationError
from common.services import audit_log
from fleet.licensing import LicenseError, verify_license
from fleet.licensing_store import current_license_status
from fleet.models import License


@transaction.atomic
def license_upload(*, actor, text: str) -> License:
    """Verify and store a license; it is in force from now on. A bad license changes nothing."""
    try:
        info = verify_license(text, settings.LICENSE_PUBLIC_KEY)
    except LicenseError as exc:
        raise ApplicationError(str(exc)) from exc
    if info.state(timezone.now(), settings.LICENSE_GRACE_DAYS) == "expired":
        raise ApplicationError(f"This license expired on {info.expires_at:%Y-%m-%d} and its grace period is over.")
    record = License.objects.create(
        text="".join(text.split()),
        plan=info.plan,
        customer=info.customer,
        expires_at=info.expires_at,
        uploaded_by=actor if getattr(actor, "pk", None) else None,
    )
    audit_log(
        actor=actor,
        action="license.upload",
        obj=record,
        details={"plan": info.plan, "expires_at": info.expires_at.isoformat()},
    )
    return record


def license_instance_limit() -> int | None:
    """How many instances the license in force allows; None for no limit."""
    status = current_license_status()
    if status.info is None or status.plan == "community" and status.info.plan != "community":
        return None
    value = status.info.limits.get("max_instances")
    return int(value) if value else None
