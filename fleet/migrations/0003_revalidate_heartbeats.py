"""Heartbeats are checked more strictly (fleet.state): forget every stored body digest, so no body
accepted under the old rules is answered by the fast lane again. Each instance's next heartbeat takes
the full path once and is validated (and its state normalised) under the new rules."""

from django.db import migrations


def forget_heartbeat_digests(apps, schema_editor):
    apps.get_model("fleet", "Instance").objects.exclude(heartbeat_digest="").update(heartbeat_digest="")


class Migration(migrations.Migration):
    dependencies = [("fleet", "0002_heartbeat_fast_lane")]

    operations = [migrations.RunPython(forget_heartbeat_digests, migrations.RunPython.noop)]
