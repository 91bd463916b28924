"""Instances that stop heartbeating go offline after the configured number of missed heartbeats."""

from datetime import timedelta

from django.utils import timezone

from fleet import services
from fleet.choices import InstanceStatus
from fleet.models import Instance
from fleet.signals import instances_went_offline

from .helpers import make_instance


def test_an_instance_goes_offline_after_the_configured_missed_heartbeats(db, settings):
    settings.HEARTBEAT_INTERVAL, settings.OFFLINE_AFTER_MISSED = 10, 3
    now = timezone.now()
    quiet = make_instance("quiet")
    recent = make_instance("recent")
    Instance.objects.filter(pk=quiet.pk).update(last_seen_at=now - timedelta(seconds=31))
    Instance.objects.filter(pk=recent.pk).update(last_seen_at=now - timedelta(seconds=29))
    seen = []

    def receiver(sender, instance_ids, **kwargs):
        seen.extend(instance_ids)

    instances_went_offline.connect(receiver)
    try:
        assert services.instances_mark_offline(now=now) == [quiet.pk]
    finally:
        instances_went_offline.disconnect(receiver)
    assert seen == [quiet.pk]
    assert Instance.objects.get(pk=quiet.pk).status == InstanceStatus.OFFLINE
    assert Instance.objects.get(pk=recent.pk).status == InstanceStatus.ONLINE


def test_nothing_is_signalled_when_every_instance_is_alive(db):
    make_instance("alive")
    Instance.objects.update(last_seen_at=timezone.now())
    assert services.instances_mark_offline() == []
