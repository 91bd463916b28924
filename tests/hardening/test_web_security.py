import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def test_production_settings_pass_django_deploy_checks_without_warnings(tmp_path):
    env = dict(
        os.environ,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(60),
        FERNET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="panel.example.com",
        PANEL_URL="https://panel.example.com",
        VAR_DIR=str(tmp_path),
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests for their own thread only
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FERNET_KEYS")}
    env.update(DEBUG="false", VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_pages_send_a_csp_without_inline_scripts_and_deny_framing(admin_client):
    response = admin_client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_no_template_contains_an_inline_script_or_event_handler():
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for i, line in enumerate(text.splitlines(), 1):
            lowered = line.lower()
            if "<script" in lowered and "src=" not in lowered and "application/json" not in lowered:
                offenders.append(f"{path.relative_to(ROOT)}:{i}")
            if any(f" {attr}=" in lowered for attr in ("onclick", "onchange", "onsubmit", "onload")):
                offenders.append(f"{path.relative_to(ROOT)}:{i}")
    assert offenders == []
