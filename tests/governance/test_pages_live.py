"""The policy page refreshes its figures and violations while the scope is being evaluated, then stops."""

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.models import Policy
from tests.base import assert_status
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db


def live_part(client, policy):
    response = client.get(policy.get_absolute_url(), HTTP_HX_REQUEST="true")
    assert_status(response, 200)
    return response.content.decode()


def test_a_policy_saved_moments_ago_refreshes_its_live_part_and_says_it_is_evaluating(viewer_client, make_instance):
    make_instance(apps=[("telnetd", "1")])
    policy = make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    html = live_part(viewer_client, policy)
    assert 'id="policy-live"' in html and "<html" not in html
    assert 'hx-trigger="every 2s"' in html and "Evaluating the scope" in html


def test_once_evaluated_and_settled_the_live_part_stops_refreshing(viewer_client, make_instance):
    make_instance(apps=[("telnetd", "1")])
    policy = make_policy(name="No telnet", policy_type="blocked_apps", rules={"apps": [{"pattern": "telnetd"}]})
    Policy.objects.filter(pk=policy.pk).update(updated=timezone.now() - timedelta(minutes=5))
    html = live_part(viewer_client, policy)
    assert "hx-trigger" not in html and "Evaluating" not in html
    assert "telnetd" in html  # the violation the (eager) evaluation opened


def test_an_enabled_policy_with_instances_in_scope_but_nothing_counted_is_still_pending(viewer_client, make_instance):
    make_instance()
    policy = make_policy()
    Policy.objects.filter(pk=policy.pk).update(updated=timezone.now() - timedelta(minutes=5))
    policy.compliance.__class__.objects.filter(pk=policy.pk).update(compliant=0, noncompliant=0, exempt=0, unknown=0)
    assert 'hx-trigger="every 2s"' in live_part(viewer_client, policy)


def test_a_disabled_policy_never_polls(viewer_client, make_instance):
    make_instance()
    policy = make_policy(enabled=False)
    assert "hx-trigger" not in live_part(viewer_client, policy)
