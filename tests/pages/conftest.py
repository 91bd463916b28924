"""The pages' shared fixture: a small fleet with something on every list and page."""

import pytest
from django.utils import timezone

from fleet import services as fleet
from fleet.choices import CommandType, InstanceStatus, ScopeKind
from fleet.models import Group, Instance
from fleet.scopes import Scope
from governance import services as governance


@pytest.fixture
def site(admin_user, install_license):
    """A small fleet with something on every page: servers, a group, tags, a policy with violations, an
    exception, a command with runs, a registration token, a canary."""
    install_license("enterprise")
    group = Group.objects.create(name="web", description="Web servers")
    servers = []
    for n, apps in enumerate(([{"name": "telnetd", "version": "1", "running": True}], [], []), 1):
        server = Instance.objects.create(
            name=f"web-0{n}",
            status=InstanceStatus.ONLINE,
            last_seen_at=timezone.now(),
            os_version=f"24.04.{n}",
            address=f"127.0.0.1:{9000 + n}",
            apps=apps + [{"name": "web-app", "version": "1.0", "running": True}],
            settings={"ssh.password_auth": True},
        )
        server.groups.add(group)
        server.tags.set(fleet.tags_get_or_create(["env=prod", f"slot={n}"]))
        servers.append(server)
    policy = governance.policy_create(
        actor=admin_user,
        name="No telnet",
        policy_type="blocked_apps",
        rules={"apps": [{"pattern": "telnetd", "below_version": "2"}]},
        scope=Scope(kind=ScopeKind.TAGS, tags=("env=prod",)),
    )
    governance.evaluate_fleet()
    governance.exception_create(
        actor=admin_user,
        policy=policy,
        rule_key="",
        scope=Scope(kind=ScopeKind.INSTANCES, instance_ids=(servers[2].pk,)),
        justification="decommissioned next week",
        expires_at=timezone.now() + timezone.timedelta(days=7),
    )
    command = fleet.command_create(
        actor=admin_user,
        kind=CommandType.RESTART_APP,
        params={"app": "web-app"},
        scope=Scope(kind=ScopeKind.GROUPS, group_ids=(group.pk,)),
    )
    token, _ = fleet.registration_token_create(actor=admin_user, name="web servers", tags=["env=prod"])
    from canary import services as canary

    deployment = canary.canary_create(
        actor=admin_user,
        kind="update_app",
        params={"app": "web-app", "version": "2.0"},
        scope=Scope(),
        criteria=["online"],
        selection="percentage",
        percentage=34,
        check_interval=30,
        max_duration=300,
    )
    remediation = _enforce_with_an_attempt(admin_user, policy)
    from governance.services.snapshots import compliance_snapshot_take

    for days_ago in (2, 1, 0):  # the reports and the policy's compliance over time have days to show
        compliance_snapshot_take(day=timezone.localdate() - timezone.timedelta(days=days_ago))
    return {
        **remediation,
        "sync_run": _sync_run_with_policy_changes(policy),
        "server": servers[0],
        "group": group,
        "policy": policy,
        "command": command,
        "run": command.runs.first(),
        "token": token,
        "canary": deployment,
    }


def _enforce_with_an_attempt(admin_user, policy) -> dict:
    """The policy edited once (a second version with a diff), switched to enforce with rails, and one round
    of remediation: web-01's telnetd violation gets an uninstall attempt with its command run."""
    from governance.models import RemediationAttempt
    from governance.remediation.rails import remediation_update
    from governance.remediation.services import remediate_policy

    policy = governance.policy_update(
        actor=admin_user,
        policy=policy,
        name=policy.name,
        description="Telnet sends passwords in clear text.",
        rules={"apps": [{"pattern": "telnetd", "below_version": "3"}]},
        scope=policy.scope,
    )
    governance.evaluate_fleet()
    remediation_update(
        actor=admin_user,
        policy=policy,
        data={"mode": "enforce", "max_instances": 1, "max_per_hour": 10, "window_timezone": "Europe/Berlin"},
    )
    remediate_policy(policy_id=policy.pk)
    attempt = RemediationAttempt.objects.select_related("violation").first()
    assert attempt is not None, "the enforce round queued no fix"
    return {"policy": policy, "violation": attempt.violation}


def _sync_run_with_policy_changes(policy):
    from gitops.models import Repository, SyncRun

    repository = Repository.objects.create(
        name="policies-repo", url="ssh://git@127.0.0.1/policies.git", private_key_encrypted="-"
    )
    return SyncRun.objects.create(
        repository=repository,
        status="applied",
        trigger="manual",
        commit_sha="ab" * 20,
        finished_at=timezone.now(),
        policy_changes=[
            {"policy": policy.name, "action": "changed", "file": "policies/no-telnet.yaml", "fields": ["rules"]},
            {"policy": "Agent everywhere", "action": "created", "file": "policies/agent.yaml", "fields": []},
        ],
    )
