"""Push webhooks of GitHub, GitLab and Gitea: signed with the repository's secret, shown once."""

import hashlib
import hmac
import json

import pytest

from gitops import services
from gitops.choices import SyncStatus

from .conftest import sync

pytestmark = pytest.mark.integration
API = "/api/governance/gitops"


def push_body(ref="refs/heads/main", after="a" * 40) -> bytes:
    return json.dumps({"ref": ref, "after": after, "before": "0" * 40, "repository": {"name": "fleet-config"}}).encode()


def signed(forge: str, secret: str, body: bytes, *, event: str = "") -> dict:
    """The headers each forge sends with a push."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if forge == "github":
        return {"HTTP_X_GITHUB_EVENT": event or "push", "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}"}
    if forge == "gitlab":
        return {"HTTP_X_GITLAB_EVENT": event or "Push Hook", "HTTP_X_GITLAB_TOKEN": secret}
    return {"HTTP_X_GITEA_EVENT": event or "push", "HTTP_X_GITEA_SIGNATURE": digest}


@pytest.fixture
def hooked(connect, admin_api, django_capture_on_commit_callbacks):
    repo = connect()
    response = admin_api.post(f"{API}/{repo.pk}/webhook-secret")
    assert response.status_code == 201
    return repo, response.data["secret"], response.data["webhook_url"]


def post(client, url, body, headers):
    return client.post(url, data=body, content_type="application/json", **headers)


@pytest.mark.parametrize("forge", ["github", "gitlab", "gitea"])
def test_a_signed_push_of_the_tracked_branch_queues_a_sync_at_once(
    forge, hooked, client, queued_syncs, django_capture_on_commit_callbacks
):
    repo, secret, url = hooked
    body = push_body()

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, url, body, signed(forge, secret, body))

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response.json()["forge"] == forge
    assert queued_syncs[-1] == (repo.pk, f"webhook:{forge}")


@pytest.mark.parametrize("forge", ["github", "gitlab", "gitea"])
def test_a_wrong_or_missing_signature_is_403_in_the_one_envelope(forge, hooked, client, queued_syncs):
    repo, secret, url = hooked
    body = push_body()
    forged = signed(forge, "not-the-secret", body)
    unsigned = {k: v for k, v in forged.items() if "EVENT" in k}

    for headers in (forged, unsigned):
        response = post(client, url, body, headers)
        assert response.status_code == 403
        assert response.json()["error"] == "invalid_signature" and "errors" in response.json()
    assert queued_syncs == []


def test_a_tampered_body_fails_the_signature_of_the_original(hooked, client, queued_syncs):
    repo, secret, url = hooked
    headers = signed("github", secret, push_body())
    assert post(client, url, push_body(ref="refs/heads/evil"), headers).status_code == 403


def test_a_push_to_another_branch_a_tag_or_a_ping_is_answered_and_ignored(hooked, client, queued_syncs):
    repo, secret, url = hooked
    for body, event in (
        (push_body(ref="refs/heads/feature"), ""),
        (push_body(ref="refs/tags/v1"), ""),
        (json.dumps({"zen": "hi", "hook_id": 1}).encode(), "ping"),
    ):
        response = post(client, url, body, signed("github", secret, body, event=event))
        assert response.status_code == 200 and response.json()["status"] == "ignored", response.json()
    assert queued_syncs == []


@pytest.mark.parametrize("forge", ["github", "gitlab"])
def test_a_repository_pinned_to_a_tag_follows_pushes_of_that_tag_only(
    forge, hooked, client, admin_user, queued_syncs, django_capture_on_commit_callbacks
):
    repo, secret, url = hooked
    services.repository_update(actor=admin_user, repository=repo, revision="v1")
    tag_event = "Tag Push Hook" if forge == "gitlab" else ""

    body = push_body()  # the branch moved: the pin stays where it is
    response = post(client, url, body, signed(forge, secret, body))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert "pinned to 'v1'" in response.json()["reason"] and queued_syncs == []
    body = push_body(ref="refs/tags/v2")
    assert post(client, url, body, signed(forge, secret, body, event=tag_event)).json()["status"] == "ignored"

    body = push_body(ref="refs/tags/v1")  # the pinned tag moved
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, url, body, signed(forge, secret, body, event=tag_event))
    assert response.status_code == 202 and queued_syncs == [(repo.pk, f"webhook:{forge}")]


def test_a_repository_without_a_secret_refuses_webhooks_and_a_new_secret_replaces_the_old(
    connect, admin_api, client, viewer_api
):
    repo = connect()
    url = f"{API}/{repo.pk}/webhook"
    body = push_body()
    assert post(client, url, body, signed("github", "", body)).status_code == 403
    assert viewer_api.post(f"{API}/{repo.pk}/webhook-secret").status_code == 403

    first = admin_api.post(f"{API}/{repo.pk}/webhook-secret").data["secret"]
    second = admin_api.post(f"{API}/{repo.pk}/webhook-secret").data["secret"]

    assert post(client, url, body, signed("gitea", first, body)).status_code == 403
    assert post(client, url, body, signed("gitea", second, body)).status_code == 202
    shown = admin_api.get(f"{API}/{repo.pk}").content.decode()
    repo.refresh_from_db()
    assert second not in shown and second not in repo.webhook_secret_encrypted
    assert admin_api.get(f"{API}/{repo.pk}").data["webhook_enabled"] is True


def test_a_replayed_push_is_harmless(hooked, client, git_repo, fleet):
    repo, secret, url = hooked
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    git_repo.commit()
    body = push_body()
    headers = signed("gitlab", secret, body)

    for _ in range(2):
        assert post(client, url, body, headers).status_code == 202
    first, replay = sync(repo, trigger="webhook:gitlab"), sync(repo, trigger="webhook:gitlab")

    assert (first.status, replay.status) == (SyncStatus.APPLIED, SyncStatus.NOOP)
    assert replay.commands_issued == 0


def test_the_repository_page_shows_a_new_webhook_secret_once(connect, admin_client):
    repo = connect()
    response = admin_client.post(f"/governance/gitops/{repo.pk}/webhook-secret/", follow=True)
    page = response.content.decode()
    assert "shown this once" in page and f"/api/governance/gitops/{repo.pk}/webhook" in page
    assert "shown this once" not in admin_client.get(f"/governance/gitops/{repo.pk}/").content.decode()


def test_webhooks_answer_402_without_the_gitops_license(hooked, client, install_license):
    repo, secret, url = hooked
    install_license("business")
    body = push_body()
    assert post(client, url, body, signed("github", secret, body)).status_code == 402


def test_the_secret_is_rotated_with_the_private_keys(hooked, settings, client):
    from cryptography.fernet import Fernet

    repo, secret, url = hooked
    settings.FERNET_KEYS = [Fernet.generate_key().decode(), *settings.FERNET_KEYS]
    services.repositories_rotate_keys()
    settings.FERNET_KEYS = settings.FERNET_KEYS[:1]
    body = push_body()
    assert post(client, url, body, signed("github", secret, body)).status_code == 202
