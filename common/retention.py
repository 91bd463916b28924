"""Retention: old records that only grow (health polls, sync runs, finished commands, audit entries…)
are deleted once a day, so the panel can run for years on a bounded database.

Each app declares what it prunes in its own `retention.py` with `@register(setting)`: a function that
takes the cutoff time and returns a queryset of the rows older than it. The setting names the number of
days to keep (0 keeps forever). `prune(dry_run=...)` runs every rule; the beat task
`common.tasks.prune_old_records` calls it daily and the `prune_records` command by hand.

Rows are deleted in batches of `BATCH` primary keys, each batch its own transaction, so a prune never holds
locks on a large table for long and a crash in the middle leaves only whole batches deleted. Two prunes at
once are harmless: each deletes by primary key what is still there.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

log = logging.getLogger(__name__)
BATCH = 5_000


@dataclass(frozen=True)
class Rule:
    name: str
    setting: str
    select: object  # callable(cutoff) -> QuerySet of the rows to delete

    @property
    def days(self) -> int:
        return int(getattr(settings, self.setting))


RULES: dict[str, Rule] = {}


def register(setting: str):
    """Declare a rule: `@register("AUDIT_RETENTION_DAYS") def audit_entries(cutoff): return <queryset>`."""

    def decorate(select):
        name = f"{select.__module__.split('.')[0]}.{select.__name__}"
        RULES[name] = Rule(name=name, setting=setting, select=select)
        return select

    return decorate


def rules() -> list[Rule]:
    autodiscover_modules("retention")
    return sorted(RULES.values(), key=lambda r: r.name)


def delete_in_batches(queryset, batch: int = BATCH) -> int:
    """Delete the queryset's rows `batch` primary keys at a time, one transaction each; return how many."""
    model = queryset.model
    total = 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        with transaction.atomic():
            model.objects.filter(pk__in=ids).delete()
        total += len(ids)


def prune(*, dry_run: bool = False, now=None) -> dict[str, int]:
    """Run every rule whose setting keeps a finite number of days; return rows deleted (or that would be)."""
    now = now or timezone.now()
    result = {}
    for rule in rules():
        if rule.days <= 0:
            continue
        queryset = rule.select(now - timedelta(days=rule.days))
        result[rule.name] = queryset.count() if dry_run else delete_in_batches(queryset)
    if not dry_run and any(result.values()):
        log.info("pruned old records: %s", ", ".join(f"{k}={v}" for k, v in result.items() if v))
    return result


@register("AUDIT_RETENTION_DAYS")
def audit_entries(cutoff):
    from .models import AuditEntry

    return AuditEntry.objects.filter(created__lt=cutoff)


@register("NOTIFICATION_RETENTION_DAYS")
def read_notifications(cutoff):
    from .models import Notification

    return Notification.objects.filter(read_at__lt=cutoff)
