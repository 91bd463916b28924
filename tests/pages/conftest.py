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
    return {
        "server": servers[0],
        "group": group,
        "policy": policy,
        "command": command,
        "run": command.runs.first(),
        "token": token,
        "canary": deployment,
    }
