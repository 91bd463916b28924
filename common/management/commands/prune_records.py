from django.core.management.base import BaseCommand

from common import retention


class Command(BaseCommand):
    help = "Delete records older than the retention settings keep (what the daily task does)."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")

    def handle(self, *args, dry_run=False, **options):
        counts = retention.prune(dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for rule in retention.rules():
            days = rule.days
            kept = "kept forever" if days <= 0 else f"{verb} {counts.get(rule.name, 0)} (keeps {days} days)"
            self.stdout.write(f"{rule.name:40} {kept}  [{rule.setting}]")
