"""The Django admin shows the enforce-mode rows for an operator to inspect, and changes none of them:
rails go through the Remediation page or the API (validated), attempts and digests are the services' record."""

import pytest

from governance.models import ComplianceDigest, RemediationAttempt, RemediationSettings
from governance.remediation.rails import remediation_update
from governance.remediation.services import remediate_policy
from tests.base import assert_status

from .conftest import make_policy
from .test_remediation import AGENT

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, admin_user):
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    return client


@pytest.fixture
def attempt(admin_user, make_instance):
    make_instance(apps=[])
    policy = make_policy(admin_user, name="Agent", rules=AGENT)
    remediation_update(actor=admin_user, policy=policy, data={"mode": "enforce"})
    remediate_policy(policy_id=policy.pk)
    return RemediationAttempt.objects.get()


def test_the_admin_lists_settings_attempts_and_digests(staff_client, attempt):
    ComplianceDigest.objects.create(week="2026-11-30", recipients=2)
    page = staff_client.get("/admin/governance/remediationattempt/")
    assert_status(page, 200)
    assert "install_app" in page.content.decode()
    assert_status(staff_client.get(f"/admin/governance/remediationattempt/{attempt.pk}/change/"), 200)
    assert "Agent" in staff_client.get("/admin/governance/remediationsettings/").content.decode()
    assert "2026" in staff_client.get("/admin/governance/compliancedigest/").content.decode()


def test_the_admin_cannot_add_change_or_delete_them(staff_client, attempt):
    rails = RemediationSettings.objects.get()
    assert staff_client.get("/admin/governance/remediationsettings/add/").status_code == 403
    staff_client.post(f"/admin/governance/remediationsettings/{rails.pk}/change/", {"max_instances": "99"})
    staff_client.post(f"/admin/governance/remediationattempt/{attempt.pk}/delete/", {"post": "yes"})
    rails.refresh_from_db()
    assert rails.max_instances != 99 and RemediationAttempt.objects.filter(pk=attempt.pk).exists()
