from django.core.management import call_command

from governance.models import Policy


def test_the_demo_policies_are_created_once_and_cover_every_type(db):
    call_command("seed_demo_policies")
    call_command("seed_demo_policies")
    assert Policy.objects.count() == 4
    assert set(Policy.objects.values_list("policy_type", flat=True)) == {
        "required_apps",
        "blocked_apps",
        "baseline",
        "update_rules",
    }
