from django.core.management.base import BaseCommand

from gitops.services import repositories_rotate_keys


class Command(BaseCommand):
    help = "Re-encrypt every stored GitOps private key with the first key in FERNET_KEYS (after adding a new key)."

    def handle(self, *args, **options):
        count = repositories_rotate_keys(actor="manage.py gitops_rotate_keys")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} private key(s) with the newest Fernet key."))
