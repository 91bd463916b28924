from django.core.management.base import BaseCommand

from fleet.scopes import Scope
from governance import services
from governance.models import Policy

# A starting set an operator would recognise, matching what the simulated fleet reports.
DEMO_POLICIES = [
    (
        "Monitoring and logging agents",
        "required_apps",
        {"apps": [{"name": "monitoring-agent"}, {"name": "log-collector"}]},
        "Every server ships metrics and logs.",
    ),
    (
        "No outdated database engine",
        "blocked_apps",
        {"apps": [{"pattern": "outdated-db", "below_version": "2.0"}]},
        "outdated-db before 2.0 has known vulnerabilities.",
    ),
    ("SSH hardening", "baseline", {"settings": {"ssh.password_auth": False}}, "Key-based SSH only."),
    (
        "OS updates within 48 hours",
        "update_rules",
        {"os_deadline_hours": 48, "apps": []},
        "Apply OS releases within two days.",
    ),
]


class Command(BaseCommand):
    help = "Create a few example policies (idempotent: existing names are left alone) for the demo."

    def handle(self, *args, **options):
        created = 0
        for name, policy_type, rules, description in DEMO_POLICIES:
            if Policy.objects.filter(name=name).exists():
                continue
            services.policy_create(
                actor="demo", name=name, policy_type=policy_type, rules=rules, scope=Scope(), description=description
            )
            created += 1
        self.stdout.write(f"{created} demo polic{'y' if created == 1 else 'ies'} created")
