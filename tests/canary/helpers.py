from canary import services
from canary.choices import Criterion, SelectionKind
from fleet.scopes import Scope

CHANGE = {"kind": "update_app", "params": {"app": "web-app", "version": "2.0"}}


def start(
    actor, *, instances=None, percentage=None, scope=None, criteria=(Criterion.ONLINE, Criterion.HEALTH_CHECK), **kw
):
    """Start a canary of `update_app web-app → 2.0` with short intervals."""
    options = {"check_interval": 1, "max_duration": 30, **kw}
    if "steps" in kw:
        pass
    elif instances is not None:
        options.update(selection=SelectionKind.INSTANCES, instances=instances)
    else:
        options.update(selection=SelectionKind.PERCENTAGE, percentage=percentage or 33)
    return services.canary_create(
        actor=actor,
        kind=CHANGE["kind"],
        params=dict(CHANGE["params"]),
        scope=scope or Scope(),
        criteria=list(criteria),
        **options,
    )


def canary_runs(deployment):
    return list(deployment.canary_command.runs.select_related("instance"))


def open_violation(instance, policy_type: str, rule_key: str):
    """A real open governance violation on `instance` (what the "no new violations" criterion reads)."""
    from django.utils import timezone

    from governance.models import Policy, Violation

    policy, _ = Policy.objects.get_or_create(name=f"{policy_type} policy", defaults={"policy_type": policy_type})
    now = timezone.now()
    return Violation.objects.create(
        policy=policy,
        policy_name=policy.name,
        instance=instance,
        rule_key=rule_key,
        rule=rule_key,
        evidence="seen in the test",
        severity="warning",
        first_detected_at=now,
        last_seen_at=now,
    )
