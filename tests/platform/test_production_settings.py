"""Secrets and DEBUG: no secret constants in the source, development keys generated once into var/,
production refusing to start without its secrets, and the compose file passing `check --deploy`."""

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
SHOW = "from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY, ','.join(s.FERNET_KEYS))"


def _env(tmp_path, **values) -> dict:
    """The machine's environment without the variables under test (pytest-env sets DEBUG=true)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "FERNET_KEYS", "PANEL_URL")}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests for their own thread only
    env.update({"VAR_DIR": str(tmp_path), **values})
    return env


def _manage(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_debug_unset_means_production_and_a_missing_secret_stops_the_process_in_words(tmp_path):
    result = _manage(_env(tmp_path), "check")
    assert result.returncode != 0
    assert "SECRET_KEY and FERNET_KEYS must be set when DEBUG is off (production)" in result.stderr
    assert not (tmp_path / "dev-secret-key").exists()  # production never falls back to a generated key


def test_production_names_the_one_secret_that_is_missing(tmp_path):
    result = _manage(_env(tmp_path, DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50)), "check")
    assert result.returncode != 0
    assert "FERNET_KEYS must be set when DEBUG is off" in result.stderr
    assert "SECRET_KEY and" not in result.stderr


def test_gunicorn_does_not_start_without_the_secrets(tmp_path):
    env = _env(tmp_path, DEBUG="false")
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", "127.0.0.1:0", "-w", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY and FERNET_KEYS must be set" in result.stderr


def test_development_keys_are_generated_once_into_var_and_reused(tmp_path):
    first = _manage(_env(tmp_path, DEBUG="true"), "shell", "-v", "0", "-c", SHOW)
    assert first.returncode == 0, first.stderr
    again = _manage(_env(tmp_path, DEBUG="true"), "shell", "-v", "0", "-c", SHOW)
    assert again.stdout == first.stdout
    debug, secret_key, fernet_keys = first.stdout.split()
    assert debug == "True"
    assert (tmp_path / "dev-secret-key").read_text().strip() == secret_key and len(secret_key) >= 50
    assert (tmp_path / "dev-fernet-key").read_text().strip() == fernet_keys
    Fernet(fernet_keys.encode())  # a usable key
    for name in ("dev-secret-key", "dev-fernet-key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    # Another checkout (another var/) gets keys of its own: nothing is a constant of the source.
    other = _manage(_env(tmp_path / "other", DEBUG="true"), "shell", "-v", "0", "-c", SHOW)
    assert set(other.stdout.split()[1:]).isdisjoint(first.stdout.split()[1:])


def test_keys_from_the_environment_win_over_the_generated_ones(tmp_path):
    key = Fernet.generate_key().decode()
    result = _manage(_env(tmp_path, DEBUG="true", SECRET_KEY="s" * 50, FERNET_KEYS=key), "shell", "-v", "0", "-c", SHOW)
    assert result.stdout.split() == ["True", "s" * 50, key]
    assert not (tmp_path / "dev-secret-key").exists()


def test_the_source_holds_no_fernet_key_or_secret_key_constant():
    fernet_like = re.compile(r"['\"][A-Za-z0-9_-]{43}=['\"]")
    key_literal = re.compile(r"SECRET_KEY\s*=\s*(['\"])[^'\"]*\1\s*[,)\n]|SECRET_KEY['\"],\s*default\s*=\s*['\"][^'\"]")
    offenders = []
    for folder in ("config", "common", "fleet", "governance", "canary", "gitops", "bench", "deploy"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if fernet_like.search(text) or key_literal.search(text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _compose_environment() -> dict:
    """docker-compose.yml's application environment, ${VAR:-default} and ${VAR:?...} filled in as
    `docker compose up` would with only SECRET_KEY and FERNET_KEYS given."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    given = {"SECRET_KEY": secrets.token_urlsafe(50), "FERNET_KEYS": Fernet.generate_key().decode()}

    def fill(value: str) -> str:
        def one(match):
            name, op, arg = match.group(1), match.group(2), match.group(3)
            if op == ":?":
                assert name in given, f"compose requires {name}"
                return given[name]
            return given.get(name, arg)

        return re.sub(r"\$\{(\w+)(:[-?])([^}]*)\}", one, str(value))

    return {key: fill(value) for key, value in compose["x-app"]["environment"].items()}


def test_the_compose_environment_passes_the_deploy_checks_without_warnings(tmp_path):
    compose_env = _compose_environment()
    assert compose_env["DEBUG"] == "false"
    # Checks read settings only: the database, Redis and the volume are not needed (VAR_DIR made local).
    env = _env(tmp_path, **{**compose_env, "VAR_DIR": str(tmp_path)})
    result = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_deploy_checks_warn_about_a_missing_panel_url(tmp_path):
    compose_env = {k: v for k, v in _compose_environment().items() if k != "PANEL_URL"}
    result = _manage(_env(tmp_path, **{**compose_env, "VAR_DIR": str(tmp_path)}), "check", "--deploy")
    assert "common.W001" in result.stdout + result.stderr


def test_processes_starting_together_agree_on_the_generated_keys(tmp_path):
    """`make run` starts web, worker, beat and the simulator at once on a fresh var/: one key wins."""
    command = [
        sys.executable,
        "-c",
        f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; exec({SHOW!r})",
    ]
    procs = [
        subprocess.Popen(command, cwd=ROOT, env=_env(tmp_path, DEBUG="true"), stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = {proc.communicate(timeout=120)[0] for proc in procs}
    assert len(outputs) == 1 and outputs != {""}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".dev-", "dev-"))) == [
        "dev-fernet-key",
        "dev-secret-key",
    ]
