from django.core.management.base import BaseCommand

from governance import services


class Command(BaseCommand):
    help = "Record today's compliance snapshot (fleet, groups, policies, instances); re-running replaces it."

    def handle(self, *args, **options):
        result = services.compliance_snapshot_take()
        self.stdout.write(f"Snapshot {result['date']}: fleet {result['fleet']}%, {result['instances']} instances")
