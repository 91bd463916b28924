"""Baseline rules stored without an OS match keep the meaning they had: "minimum" (the default is now
"exact", the spec's "a specific Cloud OS version"). Rules saved through validate_rules always carry
os_match, so this only touches rows written some other way."""

from django.db import migrations


def keep_minimum(apps, schema_editor):
    Policy = apps.get_model("governance", "Policy")
    for policy in Policy.objects.filter(policy_type="baseline"):
        rules = dict(policy.rules or {})
        if rules.get("os_version") and not rules.get("os_match"):
            rules["os_match"] = "minimum"
            Policy.objects.filter(pk=policy.pk).update(rules=rules)


class Migration(migrations.Migration):
    dependencies = [("governance", "0006_policy_versions_and_git_ownership")]

    operations = [migrations.RunPython(keep_minimum, migrations.RunPython.noop)]
