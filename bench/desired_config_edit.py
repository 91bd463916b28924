"""A fleet-level desired-configuration edit from the panel, at 10,000 instances.

`POST /api/governance/gitops/desired-config {"level": "fleet", ...}` stores the key and answers 202; a
worker (gitops.tasks.drive_desired_config → services.desired_entry_drive) then plans every affected
instance's effective configuration and queues one set_config command with a run per instance (bulk
INSERTs). Until this bench, the planning ran inside the request: 2.6 s at 10,000 instances, 2.1x the
floor below, which is what moved it to the worker. Measured, against a PostgreSQL database of 10,000
instances, medians of --rounds:
  * the API request (authentication, validation, the store, the audit entry, the answer), target <= 1 s
    (the point where a person notices the wait);
  * the worker's planning and queueing when every instance needs the change (a new value each round),
    and when none does (a key every instance already has: planning only);
against a floor measured in the same run: one bulk INSERT of the same 10,000 command runs
(CommandRun.objects.bulk_create), which any way of queueing them pays. The task is called here in the
process (no broker, no worker), so the figure is the planning's own.

    .venv/bin/python bench/desired_config_edit.py [--instances 10000] [--rounds 3]

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/bench_desired (created and migrated here).
"""

import argparse
import base64
import os
import secrets
import statistics
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import fresh_database, install_license, report, timed  # noqa: E402

TARGET_SECONDS = 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_desired")
    os.environ.update(  # production settings: DEBUG would record every query, slowing the INSERTs
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="bench._settings",
        LOG_LEVEL="WARNING",
        DEBUG="false",
        SECRET_KEY="bench-" + secrets.token_hex(16),
        FERNET_KEYS=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    )
    fresh_database(url)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    settings.ALLOWED_HOSTS, settings.SECURE_SSL_REDIRECT = ["*"], False

    from django.db import connection
    from django.utils import timezone
    from rest_framework.test import APIClient

    from common.models import User
    from fleet.models import Command, CommandRun, Group, Instance
    from tests.base import api_key_for

    install_license("enterprise")

    n = args.instances
    print(f"Setting up {n} instances in {connection.settings_dict['NAME']}…")
    groups = [Group.objects.create(name=f"g{i}") for i in range(10)]
    Instance.objects.bulk_create(
        [
            Instance(
                name=f"web-{i:05d}",
                settings={"ssh.password_auth": False, "ssh.port": 22, "ntp.server": "pool"},
                apps=[{"name": "monitoring-agent", "version": "1.4.2", "running": True}],
            )
            for i in range(n)
        ],
        batch_size=2000,
    )
    through = Instance.groups.through
    ids = list(Instance.objects.order_by("pk").values_list("pk", flat=True))
    through.objects.bulk_create(
        [through(instance_id=pk, group_id=groups[i % 10].pk) for i, pk in enumerate(ids)], batch_size=5000
    )
    admin = User.objects.create_user(username="bench", password="x", role="admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_for(admin)}")
    api = "/api/governance/gitops/desired-config"

    from gitops import services, tasks

    sent = []  # what the request sends the worker: recorded, then run here, timed
    tasks.drive_desired_config.delay = lambda *a: sent.append(a)

    def edit(key, value):
        response = client.post(api, {"level": "fleet", "key": key, "value": value}, format="json")
        assert response.status_code == 202, response.content[:500]
        assert response.data["planning"]["instances"] == n
        actor, level, target, description = sent.pop()
        return lambda: services.desired_entry_drive(actor=actor, level=level, target=target, description=description)

    def floor():
        command = Command.objects.create(kind="set_config", params={"key": "floor", "value": 1})
        pickup = timezone.now() + timedelta(seconds=60)
        instances = list(Instance.objects.only("pk"))
        t, _ = timed(
            lambda: CommandRun.objects.bulk_create(
                [CommandRun(command=command, instance=i, pickup_deadline=pickup) for i in instances], batch_size=1000
            )
        )
        command.delete()
        return t

    edit("bench.warm", 0)()  # untimed: the process's cold start (imports, first queries) is not the edit's
    floors, requests, plans, noops = [], [], [], []
    for r in range(args.rounds):
        floors.append(floor())
        queued_before = CommandRun.objects.count()
        t_request, drive = timed(lambda r=r: edit("bench.key", r))
        requests.append(t_request)
        assert CommandRun.objects.count() == queued_before, "the request planned commands itself"
        plans.append(timed(drive)[0])
        queued = CommandRun.objects.count() - queued_before
        assert queued == n, f"{queued} runs queued, expected {n}"
        # A new key every instance already has with that value: the same planning, nothing queued.
        CommandRun.objects.filter(status="pending").update(status="completed")
        same = {f"bench.same{i}": "x" for i in range(r + 1)}  # this round's and the earlier ones
        Instance.objects.update(settings={"bench.warm": 0, "bench.key": r, **same})
        noops.append(timed(edit(f"bench.same{r}", "x"))[0])
        extra = CommandRun.objects.count() - queued_before - n
        assert not extra, list(CommandRun.objects.order_by("-id").values_list("command__params", flat=True)[:3])

    t_floor, t_request, t_plan, t_noop = (statistics.median(x) for x in (floors, requests, plans, noops))
    print(f"  floor: bulk INSERT of {n} command runs          {t_floor:.3f} s (median of {args.rounds})")
    print(f"  fleet-level edit: the API request (202)          {t_request:.3f} s  ({t_request / t_floor:.2f}x floor)")
    print(f"  the worker's planning, {n} instances need it  {t_plan:.3f} s  ({t_plan / t_floor:.1f}x floor)")
    print(f"  the worker's planning, nobody needs it           {t_noop:.3f} s  ({t_noop / t_floor:.1f}x floor)")
    report(
        f"desired-config fleet edit: request ({n} instances)",
        t_request,
        "s",
        f"<= {TARGET_SECONDS:.0f} s",
        t_request <= TARGET_SECONDS,
        ratio=t_request / t_floor,
    )
    report(f"desired-config fleet edit: worker planning ({n})", t_plan, "s", "-", True, ratio=t_plan / t_floor)


if __name__ == "__main__":
    main()
