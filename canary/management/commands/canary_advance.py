from django.core.management.base import BaseCommand

from canary import services


class Command(BaseCommand):
    help = "Advance canary deployments whose next step is due (what the beat task does), or the given ones."

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="Deployment ids (default: every due deployment)")

    def handle(self, ids, **options):
        for pk in ids or services.due_deployment_ids():
            phase = services.canary_advance(deployment_id=pk)
            self.stdout.write(f"canary #{pk}: {phase or 'no such deployment'}")
