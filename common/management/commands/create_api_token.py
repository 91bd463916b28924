from django.core.management.base import BaseCommand, CommandError

from common import services
from common.exceptions import ApplicationError
from common.models import User


class Command(BaseCommand):
    help = "Create a user's REST API token and print its key (only the key, once: it is not stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--regenerate", action="store_true", help="replace the user's existing token")

    def handle(self, *args, username, regenerate, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not user.is_active:
            raise CommandError(f"{username} is deactivated: a token would be refused.")
        action = services.api_token_regenerate if regenerate else services.api_token_create
        try:
            key = action(actor="manage.py", user=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(key)
