"""update_rules for "everything" (apps: "*", newly installed apps included) and the baseline OS default (exact)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from governance import evaluators, services
from governance.models import Violation
from governance.rules import RuleError, validate_rules
from tests.governance.conftest import make_policy

NOW = timezone.now()


def _update(name, version, hours_ago, kind="app"):
    return {
        "kind": kind,
        "name": name,
        "version": version,
        "released_at": (NOW - timedelta(hours=hours_ago)).isoformat(),
    }


def test_the_shorthand_covers_every_app_and_the_os():
    rules = validate_rules("update_rules", {"apps": "*", "deadline_hours": 48})
    assert rules == {"os_deadline_hours": 48, "apps": [{"name": "*", "deadline_hours": 48}]}
    state = {
        "os_version": "24.04",
        "apps": [{"name": "nginx", "version": "1.0"}, {"name": "brand-new-tool", "version": "0.1"}],
        "updates": [
            _update("brand-new-tool", "0.2", 50),
            _update("nginx", "1.1", 10),
            _update("os", "24.04.1", 72, "os"),
        ],
    }
    keys = sorted(f.rule_key for f in evaluators.evaluate("update_rules", rules, state, NOW))
    assert keys == ["update:app:brand-new-tool", "update:os"]  # nginx is within 48 h


def test_a_named_app_keeps_its_own_deadline_beside_the_wildcard():
    rules = validate_rules(
        "update_rules", {"apps": [{"name": "nginx", "deadline_hours": 200}, {"name": "*", "deadline_hours": 24}]}
    )
    state = {
        "apps": [{"name": "nginx", "version": "1.0"}, {"name": "redis", "version": "7.0"}],
        "updates": [_update("nginx", "1.1", 100), _update("redis", "7.2", 30)],
    }
    failures = evaluators.evaluate("update_rules", rules, state, NOW)
    assert [(f.rule_key, f.rule) for f in failures] == [("update:app:redis", "redis updates within 24 h of release")]


def test_deadline_hours_alone_is_refused_and_unknown_keys_still_are():
    with pytest.raises(RuleError) as caught:
        validate_rules("update_rules", {"apps": [], "deadline_hours": 5, "os_deadline": 3})
    assert set(caught.value.errors) == {"deadline_hours", "os_deadline"}


def test_the_baseline_os_version_is_exact_by_default_and_minimum_when_asked():
    exact = validate_rules("baseline", {"os_version": "24.04"})
    assert exact["os_match"] == "exact"
    newer = {"os_version": "24.10"}
    assert [f.evidence for f in evaluators.evaluate("baseline", exact, newer, NOW)] == [
        "OS 24.10 installed, exactly 24.04 required"
    ]
    minimum = validate_rules("baseline", {"os_version": "24.04", "os_match": "minimum"})
    assert evaluators.evaluate("baseline", minimum, newer, NOW) == []


@pytest.mark.django_db
def test_an_app_installed_after_the_policy_was_saved_is_covered(make_instance):
    web = make_instance(apps=[("nginx", "1.0")])
    policy = make_policy(name="Everything", policy_type="update_rules", rules={"apps": "*", "deadline_hours": 24})
    assert not Violation.objects.filter(policy=policy).exists()
    web.apps = [*web.apps, {"name": "new-agent", "version": "1.0", "running": True}]
    web.updates = [_update("new-agent", "1.1", 30)]
    web.save()
    services.evaluate_instance(instance_id=web.pk)
    [violation] = Violation.objects.filter(policy=policy, status="open")
    assert violation.rule_key == "update:app:new-agent"
