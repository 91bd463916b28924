from django.core.management.base import BaseCommand, CommandError

from gitops.models import Repository
from gitops.services import repository_sync


class Command(BaseCommand):
    help = "Sync one GitOps repository now (by id or name) and print the result."

    def add_arguments(self, parser):
        parser.add_argument("repository")

    def handle(self, *args, repository, **options):
        repo = (
            Repository.objects.filter(pk=int(repository)).first()
            if repository.isdecimal()
            else Repository.objects.filter(name=repository).first()
        )
        if repo is None:
            raise CommandError(f"No repository '{repository}'.")
        run = repository_sync(repository_id=repo.pk, trigger="manual:manage.py")
        if run is None:
            raise CommandError(
                "Nothing recorded: another sync holds the repository, its host key is not confirmed, the license "
                "lacks gitops, or the head is an invalid commit already recorded (pass it again with Sync now)."
            )
        self.stdout.write(
            f"{run.status}: commit {run.commit_sha[:12]}, {len(run.changes)} change(s), {run.commands_issued} command(s)"
        )
        for error in run.errors:
            self.stdout.write(self.style.ERROR(error))
