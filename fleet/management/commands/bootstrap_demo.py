"""Everything `make run` needs, idempotent: admin account, dev license, demo groups/tags, simulator token."""

import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from common.choices import Role
from common.models import User
from common.services import user_create
from fleet import services
from fleet.licensing_store import current_license_status
from fleet.models import Group, RegistrationToken

from ._licensetools import generate_keypair, issue, load_private_key, public_path, write_private

DEMO_GROUPS = {
    "web": "Web front ends",
    "db": "Databases",
    "edge": "Edge proxies and caches",
}
DEMO_TAGS = ["env=production", "env=staging"]
SIM_TOKEN_NAME = "Simulated fleet"


class Command(BaseCommand):
    help = "Create the demo admin, a development license, demo groups and tags, and the simulator's token."

    def handle(self, **options):
        var = Path(settings.VAR_DIR)
        password = self._admin(var / "admin-password.txt")
        plan = self._license(var / "license-signing.key")
        self._demo_data()
        token_file = self._sim_token(var / "sim-token.txt")
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  admin password: {password}  (user 'admin', also in {var / 'admin-password.txt'})")
        self.stdout.write(f"  license: {plan}")
        self.stdout.write(f"  simulator token: {token_file}")

    def _admin(self, password_file: Path) -> str:
        user = User.objects.filter(username="admin").first()
        if user is not None and password_file.exists():
            password = password_file.read_text().strip()
            if user.check_password(password):
                return password
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            if user is None:
                user = user_create(
                    actor=None, username="admin", email="admin@localhost", role=Role.ADMIN, password=password
                )
            else:
                user.set_password(password)
                user.role = Role.ADMIN
                user.is_active = True
            user.is_staff = user.is_superuser = True
            user.save()
        write_private(password_file, (password + "\n").encode())
        return password

    def _license(self, key_path: Path) -> str:
        if not key_path.exists() or not public_path(key_path).exists():
            generate_keypair(key_path)
        public = public_path(key_path).read_text().strip()
        if settings.LICENSE_PUBLIC_KEY and public != settings.LICENSE_PUBLIC_KEY:
            self.stderr.write(
                self.style.WARNING("LICENSE_PUBLIC_KEY is set to another key: no development license installed.")
            )
            return current_license_status().plan
        # Settings read the .pub at start-up; when it was just created, trust it in this process too.
        settings.LICENSE_PUBLIC_KEY = public
        status = current_license_status()
        if status.plan == "enterprise" and status.state == "valid":
            return f"enterprise, valid until {status.info.expires_at:%Y-%m-%d}"
        text = issue(load_private_key(key_path), plan="enterprise", customer="Development", days=365)
        services.license_upload(actor="bootstrap_demo", text=text)
        return "enterprise (development license issued, 365 days)"

    def _demo_data(self) -> None:
        for name, description in DEMO_GROUPS.items():
            if not Group.objects.filter(name=name).exists():
                services.group_create(actor="bootstrap_demo", name=name, description=description)
        services.tags_get_or_create(DEMO_TAGS)

    def _sim_token(self, token_file: Path) -> Path:
        if token_file.exists():
            key_id = token_file.read_text().strip().split("_")[1:2]
            token = RegistrationToken.objects.filter(key_id__in=key_id).first()
            if token is not None and token.invalid_reason(timezone.now()) is None:
                return token_file
        _token, plaintext = services.registration_token_create(actor="bootstrap_demo", name=SIM_TOKEN_NAME)
        write_private(token_file, (plaintext + "\n").encode())
        return token_file
