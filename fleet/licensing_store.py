"""The license in force, read from the database and verified against the trusted public key."""

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from common.exceptions import UpgradeRequired

from .choices import LicenseState
from .licensing import FEATURES, LicenseError, LicenseInfo, plan_allows, verify_license
from .models import License


@dataclass(frozen=True)
class LicenseStatus:
    state: str
    plan: str  # the plan in force: "community" when there is no usable license
    info: LicenseInfo | None = None
    error: str = ""

    @property
    def features(self) -> dict[str, bool]:
        return {feature: plan_allows(self.plan, feature) for feature in FEATURES}


def current_license_status() -> LicenseStatus:
    """The newest uploaded license that still verifies; expired past the grace period means community."""
    record = License.objects.order_by("-uploaded_at", "-id").first()
    if record is None:
        return LicenseStatus(state=LicenseState.NONE, plan="community")
    try:
        info = verify_license(record.text, settings.LICENSE_PUBLIC_KEY)
    except LicenseError as exc:
        return LicenseStatus(state=LicenseState.INVALID, plan="community", error=str(exc))
    state = info.state(timezone.now(), settings.LICENSE_GRACE_DAYS)
    plan = info.plan if state in (LicenseState.VALID, LicenseState.GRACE) else "community"
    return LicenseStatus(state=state, plan=plan, info=info)


def feature_refusal(feature: str, status: LicenseStatus | None = None) -> UpgradeRequired | None:
    """The one license check: None when the plan in force includes `feature`, else the UpgradeRequired
    that refuses it (what a page shows in its notice, what the API answers with 402)."""
    status = status or current_license_status()
    if plan_allows(status.plan, feature):
        return None
    return UpgradeRequired(feature=feature, current_plan=status.plan, required_plan=FEATURES[feature])


def feature_licensed(feature: str) -> bool:
    """Does the plan in force include `feature`? For what stays readable without it and only shows or
    skips what needs it (canary action buttons, GitOps syncs and reconciles after a downgrade)."""
    return feature_refusal(feature) is None


def require_feature(feature: str) -> LicenseStatus:
    """Raise UpgradeRequired (HTTP 402 / upgrade page) unless the plan in force includes `feature`."""
    status = current_license_status()
    refusal = feature_refusal(feature, status)
    if refusal is not None:
        raise refusal
    return status
