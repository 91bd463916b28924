from django.core.management.base import BaseCommand

from governance import services


class Command(BaseCommand):
    help = "Evaluate policies now: the whole fleet, or the given instance ids."

    def add_arguments(self, parser):
        parser.add_argument("instance_ids", nargs="*", type=int)

    def handle(self, *args, instance_ids, **options):
        result = services.evaluate_instances(instance_ids=instance_ids or None)
        self.stdout.write(
            f"{result['instances']} instances evaluated: {result['opened']} violations opened, "
            f"{result['updated']} updated, {result['resolved']} resolved"
        )
