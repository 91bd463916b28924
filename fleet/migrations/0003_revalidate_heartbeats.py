"""Heartbeats are checked more strictly (fleet.state): forget every stored body digest, so no body
accepted under the old rules is answered by the fast lane again. Each instance's next heartbeat takes
the full path once and is validated (and its state normalised) under the new rules. The apps get a
digest of their own, so a changed heartbeat rewrites them only when they changed."""

from django.db import migrations, models


def forget_heartbeat_digests(apps, schema_editor):
    apps.get_model("fleet", "Instance").objects.exclude(heartbeat_digest="").update(heartbeat_digest="")


class Migration(migrations.Migration):
    dependencies = [("fleet", "0002_heartbeat_fast_lane")]

    operations = [
        migrations.AddField(
            model_name="instance", name="apps_hash", field=models.CharField(blank=True, max_length=64)
        ),
        migrations.RunPython(forget_heartbeat_digests, migrations.RunPython.noop),
    ]
