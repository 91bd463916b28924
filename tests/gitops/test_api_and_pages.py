"""The API and pages: license gate, roles, the connect flow, secrets never shown."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from common.models import AuditEntry
from fleet.choices import CommandSource
from fleet.models import Command, Instance
from gitops import crypto, services, tasks
from gitops.choices import ConflictStrategy, Level, RepositoryStatus
from gitops.models import Conflict, DesiredEntry, Repository
from gitops.sshkeys import generate_keypair

from .conftest import sync

API = "/api/governance/gitops"


def key_body_lines(private_key: str) -> list[str]:
    """The secret part of a PEM key: every base64 line between the markers."""
    return [line for line in private_key.strip().splitlines() if "-----" not in line and len(line) > 20]


def assert_no_secret(content: bytes | str, private_key: str):
    text = content.decode() if isinstance(content, bytes) else content
    assert "PRIVATE KEY" not in text
    for line in key_body_lines(private_key):
        assert line not in text


# --- License and roles ---------------------------------------------------------------------------


def test_the_api_answers_402_without_the_gitops_license(admin_api, install_license):
    install_license("business")
    for response in (admin_api.get(API), admin_api.post(API, {"name": "x", "url": "git@h:x"}, format="json")):
        assert response.status_code == 402
        assert response.data["error"] == "upgrade_required" and response.data["feature"] == "gitops"
        assert response.data["required_plan"] == "enterprise"


def test_the_pages_show_an_upgrade_prompt_without_the_license(admin_client, db):
    response = admin_client.get("/governance/gitops/")
    assert response.status_code == 402
    assert b"Upgrade to Enterprise" in response.content


def test_the_api_needs_authentication(client, enterprise_license):
    assert client.get(API).status_code in (401, 403)


def test_viewers_read_but_cannot_connect_sync_or_resolve(
    viewer_api, enterprise_license, sshd, git_repo, admin_user, settings_dir
):
    repo = services.repository_connect(
        actor=admin_user,
        name="r",
        url=sshd.url(git_repo),
        known_hosts=sshd.host_key_path.with_suffix(".pub").read_text(),
    )
    assert viewer_api.get(API).status_code == 200
    assert viewer_api.post(API, {"name": "x", "url": "git@h:x"}, format="json").status_code == 403
    assert viewer_api.post(f"{API}/{repo.pk}/sync").status_code == 403
    assert viewer_api.post(f"{API}/conflicts/1/resolve", {"resolution": "git"}, format="json").status_code == 403
    assert (
        viewer_api.post(f"{API}/desired-config", {"level": "fleet", "key": "a", "value": 1}, format="json").status_code
        == 403
    )


def test_operators_may_force_a_sync_but_not_connect_or_resolve(
    operator_api,
    enterprise_license,
    sshd,
    git_repo,
    admin_user,
    settings_dir,
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    repo = services.repository_connect(
        actor=admin_user,
        name="r",
        url=sshd.url(git_repo),
        known_hosts=sshd.host_key_path.with_suffix(".pub").read_text(),
    )
    queued = []
    monkeypatch.setattr("gitops.tasks.sync_repository.delay", lambda pk, trigger: queued.append((pk, trigger)))

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_api.post(f"{API}/{repo.pk}/sync")

    assert response.status_code == 202
    assert queued == [(repo.pk, "manual:oscar")]
    assert operator_api.post(API, {"name": "x", "url": "git@h:x"}, format="json").status_code == 403
    assert operator_api.post(f"{API}/conflicts/1/resolve", {"resolution": "git"}, format="json").status_code == 403


def test_viewers_cannot_post_to_the_pages(viewer_client, enterprise_license):
    assert viewer_client.get("/governance/gitops/").status_code == 200
    assert viewer_client.post("/governance/gitops/connect/", {"name": "x"}).status_code == 403
    assert (
        viewer_client.post("/governance/gitops/config/", {"level": "fleet", "key": "a", "value": "1"}).status_code
        == 403
    )


# --- Connecting -----------------------------------------------------------------------------------


def test_connect_fetches_the_host_key_in_the_worker_and_waits_for_the_admin_to_confirm_its_fingerprint(
    admin_api, enterprise_license, sshd, git_repo, settings_dir, queued_syncs, django_capture_on_commit_callbacks
):
    from gitops.sshkeys import fingerprint, host_key_from_text

    expected = fingerprint(host_key_from_text(sshd.host_key_path.with_suffix(".pub").read_text()))

    with django_capture_on_commit_callbacks(execute=True):
        created = admin_api.post(
            API, {"name": "cfg", "url": sshd.url(git_repo), "conflict_strategy": "git_wins"}, format="json"
        )

    assert created.status_code == 201, created.data
    assert created.data["status"] == RepositoryStatus.AWAITING_HOST_KEY
    assert created.data["host_key_scan"] == "pending" and created.data["pending_host_key_fingerprint"] == ""
    assert created.data["public_key"].startswith("ssh-ed25519 ")
    repo_id = created.data["id"]
    assert queued_syncs == [("scan", repo_id)]  # the web process never connects to the Git host
    tasks.scan_host_key(repo_id)  # what the worker runs
    polled = admin_api.get(f"{API}/{repo_id}").data
    assert polled["host_key_scan"] == "ready" and polled["pending_host_key_fingerprint"] == expected
    assert polled["host_key_confirmed"] is False
    assert services.repositories_due() == []  # nothing syncs before the host key is confirmed
    wrong = admin_api.post(f"{API}/{repo_id}/confirm-host-key", {"fingerprint": "SHA256:nope"}, format="json")
    assert wrong.status_code == 400 and expected in wrong.data["message"]
    confirmed = admin_api.post(f"{API}/{repo_id}/confirm-host-key", {"fingerprint": expected}, format="json")
    assert confirmed.status_code == 200
    assert (
        confirmed.data["host_key_fingerprint"] == expected and confirmed.data["status"] == RepositoryStatus.NEVER_SYNCED
    )
    assert services.repositories_due() == [repo_id]


def test_an_expected_fingerprint_pins_the_fetched_key_only_when_it_matches(
    admin_api, enterprise_license, sshd, git_repo, settings_dir
):
    from gitops.sshkeys import fingerprint, host_key_from_text

    expected = fingerprint(host_key_from_text(sshd.host_key_path.with_suffix(".pub").read_text()))
    wrong = admin_api.post(
        API, {"name": "wrong", "url": sshd.url(git_repo), "host_key_fingerprint": "SHA256:AAAA"}, format="json"
    )
    right = admin_api.post(
        API, {"name": "right", "url": sshd.url(git_repo), "host_key_fingerprint": expected}, format="json"
    )
    tasks.scan_host_key(wrong.data["id"])
    tasks.scan_host_key(right.data["id"])

    wrong, right = Repository.objects.get(name="wrong"), Repository.objects.get(name="right")
    assert wrong.host_key_scan == "failed" and "refusing to trust it" in wrong.host_key_scan_error
    assert not wrong.host_key_confirmed
    assert right.host_key_fingerprint == expected and right.status == RepositoryStatus.NEVER_SYNCED


def test_a_bad_url_is_refused(admin_api, enterprise_license):
    response = admin_api.post(API, {"name": "cfg", "url": "https://example.com/x.git"}, format="json")
    assert response.status_code == 400 and "SSH URL" in response.data["errors"]["url"][0]


def test_an_uploaded_key_is_stored_encrypted_and_never_returned(
    admin_api, enterprise_license, sshd, git_repo, settings_dir, fleet
):
    private, public = generate_keypair()
    sshd.authorize(public)
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.commit()
    known = sshd.host_key_path.with_suffix(".pub").read_text()

    response = admin_api.post(
        API,
        {
            "name": "cfg",
            "url": sshd.url(git_repo),
            "auth_method": "uploaded",
            "private_key": private,
            "known_hosts": known,
        },
        format="json",
    )

    assert response.status_code == 201, response.data
    assert response.data["public_key"].split()[:2] == public.split()[:2]
    assert "private_key" not in response.data
    repo = Repository.objects.get()
    assert "PRIVATE KEY" not in repo.private_key_encrypted
    assert all(line not in repo.private_key_encrypted for line in key_body_lines(private))
    assert crypto.decrypt(repo.private_key_encrypted).strip() == private.strip()
    assert sync(repo).status == "applied"  # and it authenticates
    audit = AuditEntry.objects.get(action="gitops.repository.connect")
    assert_no_secret(str(audit.details), private)


def test_an_unreadable_uploaded_key_is_refused(admin_api, enterprise_license, sshd, git_repo):
    response = admin_api.post(
        API,
        {
            "name": "cfg",
            "url": sshd.url(git_repo),
            "auth_method": "uploaded",
            "private_key": "not a key",
            "known_hosts": sshd.host_key_path.with_suffix(".pub").read_text(),
        },
        format="json",
    )
    assert response.status_code == 400 and "not a private key" in response.data["message"]


def test_the_private_key_appears_in_no_api_response_page_or_admin_page(
    connect, git_repo, fleet, admin_user, admin_api, client, sshd
):
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    git_repo.commit()
    repo = connect()
    sync(repo)
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="ntp.server", value="p")
    git_repo.write_config("fleet.yaml", {"ntp.server": "g"})
    git_repo.commit()
    run = sync(repo)
    conflict = Conflict.objects.get()
    private = crypto.decrypt(repo.private_key_encrypted)
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)

    api_urls = [
        API,
        f"{API}/{repo.pk}",
        f"{API}/{repo.pk}/conflicts",
        f"{API}/{repo.pk}/runs",
        f"{API}/desired-config",
        "/api/schema/",
    ]
    for url in api_urls:
        response = admin_api.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content, private)
    pages = [
        "/governance/gitops/",
        f"/governance/gitops/{repo.pk}/",
        "/governance/gitops/connect/",
        "/governance/gitops/conflicts/",
        "/governance/gitops/config/",
        f"/governance/gitops/runs/{run.pk}/",
        f"/admin/gitops/repository/{repo.pk}/change/",
        "/admin/gitops/repository/",
        f"/admin/gitops/conflict/{conflict.pk}/change/",
        "/admin/gitops/syncrun/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content, private)


def test_rotation_re_encrypts_keys_so_the_old_fernet_key_can_be_retired(connect, settings, git_repo, fleet):
    old = settings.FERNET_KEYS[0]
    repo = connect()
    plaintext = crypto.decrypt(repo.private_key_encrypted)
    new = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new]
    with pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(repo.private_key_encrypted)

    settings.FERNET_KEYS = [new, old]
    call_command("gitops_rotate_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.FERNET_KEYS = [new]

    repo.refresh_from_db()
    assert crypto.decrypt(repo.private_key_encrypted) == plaintext
    git_repo.write_config("fleet.yaml", {"a": 1})
    git_repo.commit()
    assert sync(repo).status == "applied"


# --- Conflicts and the store through the API --------------------------------------------------------


def test_conflicts_are_listed_per_repository_and_resolved_once(connect, git_repo, fleet, admin_user, admin_api):
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    git_repo.commit()
    repo = connect(strategy=ConflictStrategy.MANUAL)
    sync(repo)
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="ntp.server", value="p")
    git_repo.write_config("fleet.yaml", {"ntp.server": "g"})
    git_repo.commit()
    sync(repo)

    listed = admin_api.get(f"{API}/{repo.pk}/conflicts")
    assert [(c["key"], c["base_value"], c["panel_value"], c["git_value"]) for c in listed.data] == [
        ("ntp.server", "a", "p", "g")
    ]
    assert_matches_its_schema(listed.json(), f"{API}/{{id}}/conflicts")  # a plain list, as it is declared
    assert admin_api.post(f"{API}/{repo.pk}/sync").status_code == 409
    assert admin_api.get(API).data["results"][0]["open_conflicts"] == 1
    cid = listed.data[0]["id"]
    bad = admin_api.post(f"{API}/conflicts/{cid}/resolve", {"resolution": "custom", "value": [1]}, format="json")
    assert bad.status_code == 400
    ok = admin_api.post(f"{API}/conflicts/{cid}/resolve", {"resolution": "custom", "value": "c"}, format="json")
    assert ok.status_code == 200 and ok.data["resolved_value"] == "c"
    again = admin_api.post(f"{API}/conflicts/{cid}/resolve", {"resolution": "git"}, format="json")
    assert again.status_code == 409
    assert admin_api.get(f"{API}/{repo.pk}/conflicts").data == []
    assert admin_api.post(f"{API}/conflicts/999999/resolve", {"resolution": "git"}, format="json").status_code == 404


def test_the_list_shows_each_repository_status(connect, git_repo, fleet, admin_api):
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    sha = git_repo.commit()
    repo = connect()
    sync(repo)

    data = admin_api.get(API).data["results"][0]

    assert data["status"] == "ok" and data["last_commit_sha"] == sha
    assert data["last_sync_at"] and data["next_sync_at"] and data["last_error"] == ""


def test_the_dashboard_shows_a_pinned_revision_and_the_directory_beside_the_branch(connect, admin_client):
    connect(name="pinned", revision="v1.2", path="clusters/prod")
    connect(name="follows")

    page = admin_client.get("/governance/gitops/").content.decode()

    assert "pinned to v1.2" in page and "clusters/prod/" in page
    assert page.count("pinned to ") == 1


def test_desired_config_entries_are_editable_through_the_api_and_queue_commands(
    admin_api, enterprise_license, fleet, django_capture_on_commit_callbacks, queued_syncs
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(
            f"{API}/desired-config",
            {"level": "group", "target": "web", "key": "ssh.password_auth", "value": False},
            format="json",
        )

    assert response.status_code == 202, response.data  # stored; a worker plans the commands
    assert response.data["value"] is False and response.data["in_git"] is False
    assert response.data["planning"] == {"instances": 2, "description": "Desired config: group web: ssh.password_auth"}
    assert queued_syncs == [("drive", "group", "web")]
    command = Command.objects.get(source=CommandSource.GITOPS)
    assert sorted(r.instance.name for r in command.runs.all()) == ["web-01", "web-02"]
    entry_id = response.data["id"]
    with django_capture_on_commit_callbacks(execute=True):
        updated = admin_api.put(f"{API}/desired-config/{entry_id}", {"value": True}, format="json")
    assert updated.status_code == 202 and updated.data["value"] is True
    same = admin_api.put(f"{API}/desired-config/{entry_id}", {"value": True}, format="json")
    assert same.status_code == 200 and same.data["planning"] is None  # already that value: nothing queued
    assert admin_api.get(f"{API}/desired-config?level=group").data["count"] == 1
    effective = admin_api.get(f"{API}/desired-config/effective?instance={fleet['web-01'].pk}")
    assert effective.data["entries"] == [{"key": "ssh.password_auth", "value": True, "source": "group web"}]
    assert admin_api.delete(f"{API}/desired-config/{entry_id}").status_code == 204
    assert not DesiredEntry.objects.exists()


def test_bad_desired_config_input_gets_a_clear_error(admin_api, enterprise_license, fleet):
    cases = [
        ({"level": "group", "target": "nope", "key": "a", "value": 1}, "no group named 'nope'"),
        ({"level": "fleet", "key": "app:monitoring-agent", "value": 1.4}, "is not a version"),
        ({"level": "instance", "target": "ghost", "key": "a", "value": 1}, "no instance named 'ghost'"),
        ({"level": "tag", "target": "notatag", "key": "a", "value": 1}, "is not a tag"),
    ]
    for body, message in cases:
        response = admin_api.post(f"{API}/desired-config", body, format="json")
        assert response.status_code == 400 and message in response.data["message"], (body, response.data)
    assert not DesiredEntry.objects.exists()
    entry, _planning = services.desired_entry_set(actor=None, level="fleet", target="", key="motd", value="hi")
    for body in ({}, {"velue": "typo"}, ["hi"]):
        response = admin_api.put(f"{API}/desired-config/{entry.pk}", body, format="json")
        assert response.status_code == 400 and list(response.data["errors"]) == ["value"], (body, response.data)
    assert DesiredEntry.objects.get().value == "hi"


def test_a_pending_command_is_not_queued_twice(
    admin_api, enterprise_license, fleet, admin_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="ssh.password_auth", value=False)
    assert Command.objects.filter(source=CommandSource.GITOPS).count() == 1
    services.desired_config_drive(actor=admin_user)
    assert Command.objects.filter(source=CommandSource.GITOPS).count() == 1


def test_an_instance_whose_reported_state_drifts_is_driven_back_by_a_worker(
    enterprise_license, fleet, admin_user, django_capture_on_commit_callbacks, queued_syncs
):
    from fleet.services import heartbeat_record

    services.desired_entry_set(
        actor=admin_user, level=Level.INSTANCE, target="db-01", key="app:monitoring-agent", value="1.4.0"
    )
    assert not Command.objects.exists()  # db-01 already runs 1.4.0

    with django_capture_on_commit_callbacks(execute=True):
        heartbeat_record(instance=fleet["db-01"], state={"settings": {}, "apps": []})  # someone removed the app

    assert not Command.objects.exists()  # nothing is planned inside the heartbeat's request...
    assert queued_syncs == [("reconcile", fleet["db-01"].pk)]  # ...a worker is asked to
    tasks.reconcile_instance(fleet["db-01"].pk)
    command = Command.objects.get(source=CommandSource.GITOPS)
    assert command.kind == "install_app" and command.params == {"app": "monitoring-agent", "version": "1.4.0"}


# --- Pages --------------------------------------------------------------------------------------


def test_connecting_in_the_ui_shows_the_public_key_and_asks_to_confirm_the_fingerprint(
    admin_client, enterprise_license, sshd, git_repo, settings_dir
):
    from gitops import tasks

    response = admin_client.post(
        "/governance/gitops/connect/",
        {
            "name": "cfg",
            "url": sshd.url(git_repo),
            "auth_method": "generated",
            "branch": "main",
            "sync_interval": 60,
            "conflict_strategy": "manual",
        },
        follow=True,
    )

    repo = Repository.objects.get()
    content = response.content.decode()
    assert repo.public_key in content and "Fetching the server" in content
    tasks.scan_host_key(repo.pk)
    repo.refresh_from_db()
    live = admin_client.get(f"/governance/gitops/{repo.pk}/?partial=live", HTTP_HX_REQUEST="true").content.decode()
    assert repo.pending_host_key_fingerprint in live and "Trust this host key" in live
    response = admin_client.post(
        f"/governance/gitops/{repo.pk}/confirm-host-key/",
        {"fingerprint": repo.pending_host_key_fingerprint},
        follow=True,
    )
    repo.refresh_from_db()
    assert repo.host_key_confirmed and "pinned" in response.content.decode()


def test_the_connect_form_explains_its_errors(admin_client, enterprise_license):
    response = admin_client.post(
        "/governance/gitops/connect/",
        {
            "name": "cfg",
            "url": "http://x",
            "auth_method": "uploaded",
            "branch": "main",
            "sync_interval": 60,
            "conflict_strategy": "manual",
        },
    )
    assert response.status_code == 200
    assert "Paste the private key" in response.content.decode()
    response = admin_client.post(
        "/governance/gitops/connect/",
        {
            "name": "cfg",
            "url": "http://x",
            "auth_method": "generated",
            "branch": "main",
            "sync_interval": 60,
            "conflict_strategy": "manual",
        },
    )
    assert "Use an SSH URL" in response.content.decode()
    assert not Repository.objects.exists()


def test_the_repository_page_shows_sync_history_and_each_run_what_it_changed(connect, git_repo, fleet, admin_client):
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    git_repo.commit()
    repo = connect()
    run = sync(repo)

    detail = admin_client.get(f"/governance/gitops/{repo.pk}/").content.decode()
    assert f'href="/governance/gitops/runs/{run.pk}/"' in detail and 'data-chart="sync-chart"' in detail
    page = admin_client.get(f"/governance/gitops/runs/{run.pk}/").content.decode()
    assert "ntp.server" in page and "Git&#x27;s change applied" in page and "git_applied" in page
    live = admin_client.get(f"/governance/gitops/{repo.pk}/?partial=live", HTTP_HX_REQUEST="true").content.decode()
    assert repo.last_commit_sha in live and "<html" not in live


def test_conflicts_are_resolved_from_the_dashboard(connect, git_repo, fleet, admin_user, admin_client):
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    git_repo.commit()
    repo = connect()
    sync(repo)
    services.desired_entry_set(actor=admin_user, level=Level.FLEET, target="", key="ntp.server", value="p")
    git_repo.write_config("fleet.yaml", {"ntp.server": "g"})
    git_repo.commit()
    sync(repo)
    conflict = Conflict.objects.get()

    dashboard = admin_client.get("/governance/gitops/").content.decode()
    assert "Keep panel value" in dashboard and "Take Git value" in dashboard
    response = admin_client.post(
        f"/governance/gitops/conflicts/{conflict.pk}/resolve/", {"resolution": "panel"}, follow=True
    )

    conflict.refresh_from_db()
    assert conflict.status == "resolved" and "Resolved" in response.content.decode()


def test_the_desired_config_editor_saves_and_removes_entries(admin_client, enterprise_license, fleet):
    response = admin_client.post(
        "/governance/gitops/config/",
        {"level": "tag", "target": "env=production", "key": "app:monitoring-agent", "value": "1.5"},
        follow=True,
    )

    entry = DesiredEntry.objects.get()
    assert entry.value == "1.5" and entry.target == "env=production"
    assert (
        "the commands for the 1 affected instance are being planned and appear under Commands in a moment"
        in response.content.decode()
    )
    again = admin_client.post(
        "/governance/gitops/config/",
        {"level": "tag", "target": "env=production", "key": "app:monitoring-agent", "value": "1.5"},
        follow=True,
    )
    assert "already had this value: nothing to change" in again.content.decode()
    bad = admin_client.post(
        "/governance/gitops/config/", {"level": "group", "target": "nope", "key": "a", "value": "1"}
    )
    assert "no group named" in bad.content.decode()
    admin_client.post(f"/governance/gitops/config/{entry.pk}/delete/")
    assert not DesiredEntry.objects.exists()


def test_the_empty_dashboard_invites_to_connect_a_repository(admin_client, enterprise_license):
    content = admin_client.get("/governance/gitops/").content.decode()
    assert "No repository connected" in content and "Connect Repository" in content


def test_the_openapi_schema_documents_the_spec_paths(admin_api, enterprise_license):
    paths = admin_api.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    for path in (
        "/api/governance/gitops",
        "/api/governance/gitops/{id}/sync",
        "/api/governance/gitops/{id}/conflicts",
        "/api/governance/gitops/conflicts/{id}",
        "/api/governance/gitops/conflicts/{id}/resolve",
    ):
        assert path in paths


def test_repository_settings_are_changed_and_the_repository_disconnected_through_the_api(
    connect, admin_api, viewer_api
):
    repo = connect()
    assert viewer_api.patch(f"{API}/{repo.pk}", {"sync_interval": 120}, format="json").status_code == 403

    response = admin_api.patch(
        f"{API}/{repo.pk}", {"sync_interval": 120, "conflict_strategy": "git_wins"}, format="json"
    )

    assert response.status_code == 200
    assert (response.data["sync_interval"], response.data["conflict_strategy"]) == (120, "git_wins")
    assert admin_api.patch(f"{API}/{repo.pk}", {"sync_interval": 5}, format="json").status_code == 400
    assert admin_api.get(f"{API}/{repo.pk}").data["branch"] == "main"  # a PATCH changes only what it names
    assert admin_api.delete(f"{API}/{repo.pk}").status_code == 204
    assert not Repository.objects.exists()
    assert AuditEntry.objects.filter(action="gitops.repository.delete").exists()


def test_operators_sync_from_the_page_but_cannot_change_settings(connect, client, operator_user, monkeypatch):
    repo = connect()
    client.force_login(operator_user)

    response = client.post(f"/governance/gitops/{repo.pk}/sync/", follow=True)

    assert "sync of fleet-config is queued" in response.content.decode()
    assert (
        client.post(
            f"/governance/gitops/{repo.pk}/settings/",
            {"branch": "x", "sync_interval": 60, "conflict_strategy": "manual"},
        ).status_code
        == 403
    )
    rows = client.get("/governance/gitops/?partial=rows", HTTP_HX_REQUEST="true").content.decode()
    assert "fleet-config" in rows and "<html" not in rows


def test_a_group_entry_only_queues_commands_for_that_group(
    admin_api, enterprise_license, fleet, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), django_assert_max_num_queries(40):
        response = admin_api.post(
            f"{API}/desired-config",
            {"level": "group", "target": "db", "key": "app:monitoring-agent", "value": "2.0"},
            format="json",
        )
    assert response.status_code == 202
    runs = [r.instance.name for c in Command.objects.filter(source=CommandSource.GITOPS) for r in c.runs.all()]
    assert runs == ["db-01"]


def test_a_fleet_level_edit_answers_before_any_command_is_planned(
    admin_api, enterprise_license, fleet, django_assert_max_num_queries, queued_syncs
):
    """Planning happens in the worker: the request's work does not grow with the fleet (10,000 instances
    took 2.6 s in the request, bench/desired_config_edit.py)."""
    Instance.objects.bulk_create([Instance(name=f"extra-{i}") for i in range(50)])
    with django_assert_max_num_queries(20):
        response = admin_api.post(
            f"{API}/desired-config", {"level": "fleet", "key": "ntp.server", "value": "pool"}, format="json"
        )
    assert response.status_code == 202 and response.data["planning"]["instances"] == 53
    assert not Command.objects.exists()  # nothing yet: the task is sent when the request commits
    assert DesiredEntry.objects.get(key="ntp.server").value == "pool"


def assert_matches_its_schema(body, template: str) -> None:
    from drf_spectacular.generators import SchemaGenerator

    from tests.fleet.test_api_schema import mismatches

    schema = SchemaGenerator().get_schema(request=None, public=True)
    declared = schema["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert mismatches(body, declared, schema["components"]["schemas"]) == []
    assert isinstance(body, list) == (declared.get("type") == "array")


def test_with_the_broker_down_a_fleet_edit_is_planned_in_the_request_not_lost(
    admin_api, enterprise_license, fleet, django_capture_on_commit_callbacks, monkeypatch
):
    """The edit is stored before the task is sent; were a failed send only logged, nothing would plan
    it (no repository, quiet servers) and the fleet would never get the change."""
    from kombu.exceptions import OperationalError

    def broker_down(*args):
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr("gitops.tasks.drive_desired_config.delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(
            f"{API}/desired-config", {"level": "fleet", "key": "ntp.server", "value": "pool"}, format="json"
        )
    assert response.status_code == 202
    command = Command.objects.get(source=CommandSource.GITOPS)
    assert command.runs.count() == Instance.objects.count() == len(fleet)
