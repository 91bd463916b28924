"""Instance.apps_text (fleet.app_index) and the trigger that clears it whenever `apps` is rewritten
without it, so that only an index written with validated apps is ever read. Existing instances keep
NULL (governance reads their `apps` in full) until their next heartbeat, which the backfill makes a
full one."""

from django.db import migrations, models

PG_TRIGGER = """
CREATE FUNCTION fleet_instance_apps_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.apps_text IS NOT DISTINCT FROM OLD.apps_text AND NEW.apps IS DISTINCT FROM OLD.apps THEN
        NEW.apps_text := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fleet_instance_apps_written BEFORE UPDATE OF apps ON fleet_instance
    FOR EACH ROW EXECUTE FUNCTION fleet_instance_apps_written();
"""
PG_DROP = "DROP TRIGGER fleet_instance_apps_written ON fleet_instance; DROP FUNCTION fleet_instance_apps_written();"
SQLITE_TRIGGER = """
CREATE TRIGGER fleet_instance_apps_written AFTER UPDATE OF apps ON fleet_instance
FOR EACH ROW WHEN NEW.apps_text IS OLD.apps_text AND NEW.apps IS NOT OLD.apps
BEGIN
    UPDATE fleet_instance SET apps_text = NULL WHERE id = NEW.id;
END;
"""
SQLITE_DROP = "DROP TRIGGER fleet_instance_apps_written;"


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.execute(SQLITE_TRIGGER)
        return
    schema_editor.execute(PG_TRIGGER)
    # lz4 where the server has it: the sweep decompresses every index (pglz took 2.6× as long).
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        row = cursor.fetchone()
    if row and row[0]:
        schema_editor.execute("ALTER TABLE fleet_instance ALTER COLUMN apps_text SET COMPRESSION lz4")


def drop_trigger(apps, schema_editor):
    sql = PG_DROP if schema_editor.connection.vendor == "postgresql" else SQLITE_DROP
    schema_editor.execute(sql)


def backfill(apps, schema_editor):
    """Every instance's next heartbeat rewrites its apps with their index: forgetting the digests makes
    it take the full path (heartbeats.heartbeat_record). Until then governance reads the `apps` JSON.
    (This used to validate and index the stored apps here, with the current code of fleet.state; a
    migration must not depend on code that changes after it.)"""
    Instance = apps.get_model("fleet", "Instance")
    Instance.objects.update(apps_hash="", state_hash="", heartbeat_digest="")


class Migration(migrations.Migration):
    dependencies = [("fleet", "0005_merge_acknowledged_and_remediation_source")]

    operations = [
        migrations.AddField(
            model_name="instance",
            name="apps_text",
            field=models.TextField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(create_trigger, drop_trigger),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
