"""Run a simulated fleet against a panel until Ctrl-C (the demo's live servers)."""

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fleet.simulator import SimulatedFleet


class Command(BaseCommand):
    help = "Start N simulated instances (agents with real health endpoints) against the panel at --url."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The panel's base URL")
        parser.add_argument("--token", default="", help="Registration token (default: VAR_DIR/sim-token.txt)")
        parser.add_argument("--count", type=int, default=20)
        parser.add_argument("--prefix", default="sim", help="Instance names are <prefix>-01, <prefix>-02, ...")
        parser.add_argument("--heartbeat-interval", type=float, default=5.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--demo-layout",
            action="store_true",
            help="Put instances without groups into the demo groups and env tags once they register",
        )

    def handle(self, url, token, count, prefix, heartbeat_interval, seed, demo_layout, **options):
        var = Path(settings.VAR_DIR)
        if not token:
            token_file = var / "sim-token.txt"
            if not token_file.exists():
                raise CommandError(f"No --token and no {token_file}: run `manage.py bootstrap_demo` first.")
            token = token_file.read_text().strip()
        if count < 1:
            raise CommandError("--count must be at least 1.")
        fleet = SimulatedFleet(
            url,
            token,
            count,
            name_prefix=prefix,
            heartbeat_interval=heartbeat_interval,
            command_poll_interval=1.0,
            command_delay=(0.5, 3.0),
            seed=seed,
            credentials_file=var / f"sim-credentials-{prefix}.json",
        )
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        fleet.start()
        self.stdout.write(f"Simulating {count} instances ({prefix}-*) against {url}; Ctrl-C to stop.")
        try:
            try:
                fleet.wait_registered(timeout=120)
            except TimeoutError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write("All simulated instances registered.")
            if demo_layout:
                self._demo_layout(fleet)
            for inst in fleet.instances:
                self.stdout.write(f"  {inst.name}: health http://{inst.address}/health")
            done.wait()
        finally:
            fleet.stop()
            self.stdout.write("Simulated fleet stopped.")

    def _demo_layout(self, fleet: SimulatedFleet) -> None:
        """A dashboard worth looking at: web/db/edge groups, most in production, some in staging."""
        from fleet import services
        from fleet.models import Group, Instance

        groups = {g.name: g for g in Group.objects.filter(name__in=["web", "db", "edge"])}
        if len(groups) < 3:
            return
        ids = [inst.instance_id for inst in fleet.instances]
        for n, instance in enumerate(Instance.objects.filter(pk__in=ids).prefetch_related("groups").order_by("name")):
            if instance.groups.all():
                continue
            group = groups[("web", "web", "db", "edge")[n % 4]]
            env = "env=staging" if n % 5 == 4 else "env=production"
            services.instance_update(actor="simulate_fleet", instance=instance, groups=[group], tags=[env])
