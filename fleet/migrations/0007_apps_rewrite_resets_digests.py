"""The apps trigger (0006) also forgets the digests when `apps` is rewritten without its index.

Before: a raw UPDATE of `apps` (a script, a restored backup) dropped the index, so governance read the
rewritten apps in full, but the agent's next heartbeat, reporting the same apps as before, matched the
stored `apps_hash` (and the fast lane's `heartbeat_digest`) and left the rewritten apps in place until
the server's packages changed. Now the same trigger clears `apps_hash`, `state_hash` and
`heartbeat_digest`: the next heartbeat takes the full path, stores what the agent reports (with its
index) and has it evaluated.

0006's backfill is replaced by the same reset, which needs no code outside this file: every
instance's next heartbeat rewrites its apps and their index through the heartbeat path itself.
"""

from django.db import migrations

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION fleet_instance_apps_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.apps_text IS NOT DISTINCT FROM OLD.apps_text AND NEW.apps IS DISTINCT FROM OLD.apps THEN
        NEW.apps_text := NULL;
        NEW.apps_hash := '';
        NEW.state_hash := '';
        NEW.heartbeat_digest := '';
    END IF;
    RETURN NEW;
END $$;
"""
PG_FUNCTION_0006 = """
CREATE OR REPLACE FUNCTION fleet_instance_apps_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.apps_text IS NOT DISTINCT FROM OLD.apps_text AND NEW.apps IS DISTINCT FROM OLD.apps THEN
        NEW.apps_text := NULL;
    END IF;
    RETURN NEW;
END $$;
"""
SQLITE_TRIGGER = """
CREATE TRIGGER fleet_instance_apps_written AFTER UPDATE OF apps ON fleet_instance
FOR EACH ROW WHEN NEW.apps_text IS OLD.apps_text AND NEW.apps IS NOT OLD.apps
BEGIN
    UPDATE fleet_instance SET apps_text = NULL, apps_hash = '', state_hash = '', heartbeat_digest = ''
    WHERE id = NEW.id;
END;
"""
SQLITE_TRIGGER_0006 = """
CREATE TRIGGER fleet_instance_apps_written AFTER UPDATE OF apps ON fleet_instance
FOR EACH ROW WHEN NEW.apps_text IS OLD.apps_text AND NEW.apps IS NOT OLD.apps
BEGIN
    UPDATE fleet_instance SET apps_text = NULL WHERE id = NEW.id;
END;
"""


def _install(schema_editor, pg: str, sqlite: str) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(pg)
        return
    schema_editor.execute("DROP TRIGGER fleet_instance_apps_written")
    schema_editor.execute(sqlite)


def forward(apps, schema_editor):
    _install(schema_editor, PG_FUNCTION, SQLITE_TRIGGER)


def backward(apps, schema_editor):
    _install(schema_editor, PG_FUNCTION_0006, SQLITE_TRIGGER_0006)


class Migration(migrations.Migration):
    dependencies = [("fleet", "0006_instance_apps_text")]

    operations = [migrations.RunPython(forward, backward)]
