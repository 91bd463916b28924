"""Secrets never leave the panel: private keys, agent credentials and API tokens appear in no API
response, no page, no admin page and no log line; the database holds ciphertext or hashes."""

import json
import logging
import re
from collections import deque
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator

from common import services as common_services
from fleet import services as fleet_services
from gitops import services as gitops_services
from gitops.choices import AuthMethod
from gitops.models import Repository
from gitops.sshkeys import generate_keypair

HREF = re.compile(r'href="(/[^"#?]*)(?:\?[^"]*)?"')
SKIP = ("/accounts/logout", "/static/", "/api/docs", "/admin/logout", "/admin/jsi18n")


@pytest.fixture
def secrets_in_play(db, admin_user, operator_user, enterprise_license, caplog):
    caplog.set_level(logging.DEBUG)
    api_key = common_services.api_token_create(actor=admin_user, user=operator_user)
    token, token_text = fleet_services.registration_token_create(actor=admin_user, name="secret-test")
    instance, credential = fleet_services.agent_register(token=token_text, name="web-01", address="127.0.0.1:9")
    fleet_services.heartbeat_record(instance=instance, state={"os_version": "24.04", "apps": [], "settings": {}})
    private_key, _public = generate_keypair()
    host_public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    repository = gitops_services.repository_connect(
        actor=admin_user,
        name="config",
        url="ssh://git@127.0.0.1:1/srv/config.git",
        auth_method=AuthMethod.UPLOADED,
        private_key=private_key,
        known_hosts=f"[127.0.0.1]:1 {host_public}",
    )
    generated = gitops_services.repository_connect(
        actor=admin_user,
        name="generated",
        url="ssh://git@127.0.0.1:1/srv/other.git",
        known_hosts=f"[127.0.0.1]:1 {host_public}",
    )
    gitops_services.repository_sync(repository_id=repository.pk, trigger="test")  # fails to connect: logs an error
    secrets = {
        "agent credential": credential.split(".", 1)[1],
        "registration token": token_text.split("_", 2)[2],
        "API token": api_key.split("_", 2)[2],
    }
    # The first base64 line of an OpenSSH key is a header every key shares; the rest carry key material.
    for label, pem in (
        ("uploaded key", private_key),
        ("generated key", gitops_services.repository_private_key(generated)),
    ):
        body = [line for line in pem.splitlines() if line and "PRIVATE KEY" not in line][1:]
        secrets.update({f"{label} line {i}": line for i, line in enumerate(body) if len(line) >= 20})
    return secrets


def _leaks(text: str, secrets: dict) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def _crawl(client, start: list[str], prefix: str, limit: int = 400) -> dict[str, str]:
    seen, pages, queue = set(start), {}, deque(start)
    while queue and len(pages) < limit:
        url = queue.popleft()
        response = client.get(url)
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        body = response.content.decode(errors="replace")
        pages[url] = body
        for link in HREF.findall(body):
            if link.startswith(prefix) and not link.startswith(SKIP) and link not in seen:
                seen.add(link)
                queue.append(link)
    return pages


def test_no_page_or_admin_page_shows_a_secret(admin_client, secrets_in_play):
    admin_client.user = None
    pages = _crawl(admin_client, ["/"], "/")
    admin_pages = _crawl(admin_client, ["/admin/"], "/admin/")
    assert len(pages) > 20 and len(admin_pages) > 10, "the crawl did not reach the app"
    leaked = {url: _leaks(body, secrets_in_play) for url, body in {**pages, **admin_pages}.items()}
    assert {url: names for url, names in leaked.items() if names} == {}


def _body(response) -> str:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return raw.decode(errors="replace")


def test_no_api_response_shows_a_secret(admin_api, secrets_in_play):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    bodies = {}
    for path, item in schema["paths"].items():
        if "get" not in item or path.startswith("/api/agent/") or path in ("/api/schema/",):
            continue
        if "{" not in path:
            response = admin_api.get(path)
            bodies[path] = _body(response)  # exports stream, and may be YAML, CSV or a zip
            is_json = response.get("Content-Type", "").startswith("application/json")
            data = json.loads(bodies[path]) if response.status_code == 200 and is_json else {}
            results = data if isinstance(data, list) else data.get("results", [])
            detail = next(
                (p for p in schema["paths"] if p.startswith(path + "/{") and p.count("{") == 1 and p.endswith("}")),
                None,
            )
            for row in results[:5] if detail else []:
                if isinstance(row, dict) and "id" in row:
                    url = re.sub(r"\{[^}]+\}", str(row["id"]), detail)
                    bodies[url] = admin_api.get(url).content.decode()
    assert len(bodies) > 20
    assert {url: _leaks(body, secrets_in_play) for url, body in bodies.items() if _leaks(body, secrets_in_play)} == {}


def test_no_log_line_shows_a_secret(secrets_in_play, caplog):
    records = caplog.get_records("setup")
    assert records, "nothing was logged: the test would prove nothing"
    text = "\n".join(f"{record.getMessage()} {record.args} {record.exc_text or ''}" for record in records)
    assert _leaks(text, secrets_in_play) == []


def test_the_database_holds_only_ciphertext_of_private_keys(secrets_in_play):
    for repository in Repository.objects.all():
        stored = repository.private_key_encrypted
        assert "PRIVATE KEY" not in stored
        assert not _leaks(stored, secrets_in_play)


def test_the_database_holds_no_token_or_credential_in_plain_text(secrets_in_play):
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert _leaks(dump.getvalue(), secrets_in_play) == []


def test_the_url_configuration_was_crawled_not_just_the_start_page(admin_client, secrets_in_play):
    named = {p.name for p in get_resolver().url_patterns if getattr(p, "name", None)}
    assert "login" in named
