from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ._licensetools import generate_keypair, public_path


class Command(BaseCommand):
    help = "Create an Ed25519 license signing key pair: PATH (private, 0600) and PATH.pub (what LICENSE_PUBLIC_KEY trusts)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="Where to write the private key (PEM)")
        parser.add_argument("--force", action="store_true", help="Overwrite an existing key")

    def handle(self, path, force, **options):
        path = Path(path)
        if path.exists() and not force:
            raise CommandError(f"{path} exists; pass --force to replace it (licenses signed with it stop verifying).")
        public = generate_keypair(path)
        self.stderr.write(f"Private key: {path}\nPublic key:  {public_path(path)}\nSet LICENSE_PUBLIC_KEY to:")
        self.stdout.write(public)
