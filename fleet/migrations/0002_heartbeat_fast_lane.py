"""The heartbeat fast lane: a digest of the last stored heartbeat body, and heartbeats as HOT updates.

An unchanged heartbeat rewrites only last_seen_at. With no index on it and room on the row's page
(fillfactor), PostgreSQL updates the row as a heap-only tuple: no index entries to add, less WAL, less
vacuum. Other databases ignore the fillfactor step.
"""

from django.db import migrations, models


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE "fleet_instance" SET (fillfactor = 70)')


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE "fleet_instance" RESET (fillfactor)')


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="instance",
            name="heartbeat_digest",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="instance",
            name="last_seen_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(set_fillfactor, reset_fillfactor),
    ]
