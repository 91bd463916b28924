from datetime import timedelta

import pytest
from django.utils import timezone

from common.exceptions import UpgradeRequired
from fleet.choices import LicenseState
from fleet.licensing import LicenseError, plan_allows, verify_license
from fleet.licensing_store import current_license_status, feature_licensed, feature_refusal, require_feature
from tests.base import LicenseIssuer


def test_a_valid_license_verifies_and_grants_its_plan():
    issuer = LicenseIssuer()
    info = verify_license(issuer.issue("business", limits={"max_instances": 50}), issuer.public_key)
    assert info.plan == "business"
    assert info.limits == {"max_instances": 50}
    assert info.state(timezone.now(), 14) == LicenseState.VALID


def test_a_tampered_license_is_refused():
    issuer = LicenseIssuer()
    body, sig = issuer.issue("pro").split(".")
    forged = issuer.issue("enterprise").split(".")[0]
    with pytest.raises(LicenseError, match="signature does not match"):
        verify_license(f"{forged}.{sig}", issuer.public_key)


def test_a_license_signed_by_another_key_is_refused():
    ours, theirs = LicenseIssuer(), LicenseIssuer()
    with pytest.raises(LicenseError, match="signature"):
        verify_license(theirs.issue("enterprise"), ours.public_key)


def test_expired_license_is_in_grace_then_expired():
    issuer = LicenseIssuer()
    info = verify_license(issuer.issue("enterprise", expired_days_ago=3), issuer.public_key)
    now = timezone.now()
    assert info.state(now, grace_days=14) == LicenseState.GRACE
    assert info.state(now + timedelta(days=12), grace_days=14) == LicenseState.EXPIRED


def test_features_follow_plan_order():
    assert not plan_allows("pro", "canary_deployments")
    assert plan_allows("business", "canary_deployments")
    assert not plan_allows("business", "gitops")
    assert plan_allows("enterprise", "gitops")


def test_without_a_license_the_panel_runs_community_and_refuses_gitops(db, license_issuer):
    assert current_license_status().plan == "community"
    with pytest.raises(UpgradeRequired) as err:
        require_feature("gitops")
    assert err.value.extra == {"feature": "gitops", "current_plan": "community", "required_plan": "enterprise"}


def test_a_license_past_its_grace_period_falls_back_to_community(install_license):
    install_license("enterprise", expired_days_ago=30)
    status = current_license_status()
    assert status.state == LicenseState.EXPIRED
    assert status.plan == "community"


def test_a_license_in_grace_keeps_its_features(install_license):
    install_license("enterprise", expired_days_ago=2)
    assert require_feature("gitops").state == LicenseState.GRACE


def test_the_one_license_check_answers_per_feature_with_the_refusal_a_page_shows(install_license):
    install_license("business")
    assert feature_refusal("canary_deployments") is None and feature_licensed("canary_deployments")
    refusal = feature_refusal("gitops")
    assert not feature_licensed("gitops")
    assert refusal.message == (
        "The 'gitops' feature requires the Enterprise plan or higher; the current license is Business."
    )
