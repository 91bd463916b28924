"""The setup commands: license keys and licenses, and the idempotent demo bootstrap."""

import stat

import pytest
from django.core.management import CommandError, call_command

from common.models import User
from fleet.licensing import verify_license
from fleet.licensing_store import current_license_status
from fleet.models import Group, RegistrationToken, Tag


def test_a_generated_key_pair_signs_licenses_the_panel_verifies(tmp_path, capsys):
    key = tmp_path / "signing.key"
    call_command("gen_license_keypair", str(key))
    public = capsys.readouterr().out.strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "signing.pub").read_text().strip() == public
    call_command(
        "issue_license",
        "--private-key",
        str(key),
        "--plan",
        "business",
        "--customer",
        "ACME",
        "--days",
        "30",
        "--max-instances",
        "50",
    )
    info = verify_license(capsys.readouterr().out.strip(), public)
    assert (info.plan, info.customer, info.limits) == ("business", "ACME", {"max_instances": 50})
    assert 29 <= (info.expires_at - info.issued_at).days <= 30


def test_key_generation_will_not_overwrite_a_key_by_accident(tmp_path):
    key = tmp_path / "k"
    call_command("gen_license_keypair", str(key))
    with pytest.raises(CommandError, match="--force"):
        call_command("gen_license_keypair", str(key))


def test_issuing_without_a_key_explains_how_to_make_one(tmp_path):
    with pytest.raises(CommandError, match="gen_license_keypair"):
        call_command("issue_license", "--private-key", str(tmp_path / "none"), "--plan", "pro", "--customer", "x")


def test_bootstrap_demo_sets_everything_up_once_and_repeats_safely(db, settings, tmp_path, capsys):
    settings.VAR_DIR = tmp_path
    settings.LICENSE_PUBLIC_KEY = ""
    call_command("bootstrap_demo")
    first = capsys.readouterr().out
    password = (tmp_path / "admin-password.txt").read_text().strip()
    assert password in first
    assert stat.S_IMODE((tmp_path / "admin-password.txt").stat().st_mode) == 0o600
    admin = User.objects.get(username="admin")
    assert admin.check_password(password) and admin.role == "admin" and admin.is_superuser
    status = current_license_status()
    assert (status.plan, status.state) == ("enterprise", "valid")
    assert sorted(Group.objects.values_list("name", flat=True)) == ["db", "edge", "web"]
    assert {str(t) for t in Tag.objects.all()} == {"env=production", "env=staging"}
    token = (tmp_path / "sim-token.txt").read_text().strip()
    assert RegistrationToken.objects.get(key_id=token.split("_")[1]).max_uses is None

    call_command("bootstrap_demo")
    assert password in capsys.readouterr().out
    assert (tmp_path / "sim-token.txt").read_text().strip() == token
    assert User.objects.count() == 1 and RegistrationToken.objects.count() == 1 and Group.objects.count() == 3
