from canary import services
from canary.choices import Criterion, SelectionKind
from fleet.scopes import Scope

CHANGE = {"kind": "update_app", "params": {"app": "web-app", "version": "2.0"}}


def start(
    actor, *, instances=None, percentage=None, scope=None, criteria=(Criterion.ONLINE, Criterion.HEALTH_CHECK), **kw
):
    """Start a canary of `update_app web-app → 2.0` with short intervals."""
    options = {"check_interval": 1, "max_duration": 30, **kw}
    if instances is not None:
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
