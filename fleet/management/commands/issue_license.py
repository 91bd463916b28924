from pathlib import Path

from django.core.management.base import BaseCommand

from fleet.licensing import PLANS

from ._licensetools import issue, load_private_key


class Command(BaseCommand):
    help = "Sign a license (development and tests). Prints the license text to upload under Settings > License."

    def add_arguments(self, parser):
        parser.add_argument("--private-key", required=True, help="Ed25519 private key (PEM), see gen_license_keypair")
        parser.add_argument("--plan", required=True, choices=PLANS)
        parser.add_argument("--customer", required=True)
        parser.add_argument("--days", type=int, default=365, help="Valid for this many days (default 365)")
        parser.add_argument("--max-instances", type=int, default=None)

    def handle(self, private_key, plan, customer, days, max_instances, **options):
        key = load_private_key(Path(private_key))
        self.stdout.write(issue(key, plan=plan, customer=customer, days=days, max_instances=max_instances))
