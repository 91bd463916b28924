"""Hostile and malformed input at the GitOps edges (issue #11): refused clearly, all problems at once,
no connection the operator did not mean, nothing half-stored."""

import logging
import socket
import threading

import pytest

from gitops import services, tasks, transport
from gitops.choices import HostKeyScan, SyncStatus
from gitops.models import DesiredEntry, Repository, SyncRun
from gitops.repoformat import CommitInvalid, parse_commit
from gitops.sshkeys import generate_keypair, load_private_key

from .conftest import sync
from .sshd import free_port

API = "/api/governance/gitops"
BAD_BRANCHES = ["x.lock", "a@{1}", "feature/", "a:b", "-x", "a..b", "a b", ".hidden"]


class Listener:
    """A TCP port on loopback that counts the connections it gets; `mode` says what it does with them:
    "silent" holds them open and says nothing, "close" hangs up at once."""

    def __init__(self, mode="silent"):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port, self.accepted, self.mode, self.held = self.sock.getsockname()[1], 0, mode, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close() if self.mode == "close" else self.held.append(conn)

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def listener():
    made = []

    def _make(mode="silent"):
        made.append(Listener(mode))
        return made[-1]

    yield _make
    for item in made:
        item.close()


@pytest.fixture
def quick_timeout(monkeypatch):
    monkeypatch.setattr(transport, "CONNECT_TIMEOUT", 0.5)


def _some_host_key() -> str:
    return "ssh-ed25519 " + load_private_key(generate_keypair()[0]).get_base64()


def _create(admin_api, **body):
    return admin_api.post(API, {"name": "cfg", "url": "ssh://git@127.0.0.1:2222/x.git", **body}, format="json")


# --- Branch names, ports, every problem at once ----------------------------------------------------


@pytest.mark.parametrize("branch", BAD_BRANCHES)
def test_branch_names_git_rejects_are_refused_by_the_api(branch, admin_api, enterprise_license):
    response = _create(admin_api, branch=branch, known_hosts=f"[127.0.0.1]:2222 {_some_host_key()}")
    assert response.status_code == 400 and "branch" in response.data["errors"], response.data
    assert not Repository.objects.exists()


def test_branch_names_git_rejects_are_refused_on_the_form_field_and_by_patch(
    admin_api, admin_client, enterprise_license, admin_user
):
    page = admin_client.post(
        "/governance/gitops/connect/",
        {"name": "cfg", "url": "git@example.com:x.git", "auth_method": "generated", "branch": "x.lock"},
    ).content.decode()
    assert "is-invalid" in page and "is not a valid branch name" in page
    repo = services.repository_connect(
        actor=admin_user,
        name="r",
        url="ssh://git@127.0.0.1:2222/x.git",
        known_hosts=f"[127.0.0.1]:2222 {_some_host_key()}",
    )
    response = admin_api.patch(f"{API}/{repo.pk}", {"branch": "a@{1}"}, format="json")
    assert response.status_code == 400 and list(response.data["errors"]) == ["branch"]
    settings_page = admin_client.post(
        f"/governance/gitops/{repo.pk}/settings/",
        {"branch": "feature/", "sync_interval": 60, "conflict_strategy": "manual"},
    ).content.decode()
    assert "is not a valid branch name" in settings_page and "is-invalid" in settings_page
    repo.refresh_from_db()
    assert repo.branch == "main"


@pytest.mark.parametrize("port", ["70000", "0", "65536"])
def test_ports_outside_1_to_65535_are_refused_and_never_wrap(port, admin_api, enterprise_license):
    response = _create(admin_api, url=f"ssh://git@127.0.0.1:{port}/x.git")
    assert response.status_code == 400 and "1 to 65535" in response.data["errors"]["url"][0]


def test_every_problem_of_a_connect_request_is_reported_at_once(admin_api, enterprise_license):
    response = _create(
        admin_api,
        url="https://example.com/x.git",
        branch="a:b",
        sync_interval=5,
        path="../etc",
        auth_method="uploaded",
        private_key="not a key",
    )
    assert response.status_code == 400
    assert set(response.data["errors"]) == {"url", "branch", "sync_interval", "path", "private_key"}
    assert response.data["message"].startswith("5 problems: ")


# --- known_hosts must name the repository's host ---------------------------------------------------


def test_a_known_hosts_line_for_another_host_pins_nothing(admin_api, enterprise_license):
    response = _create(admin_api, known_hosts=f"github.com {_some_host_key()}")
    assert response.status_code == 400
    assert "is for github.com, not for [127.0.0.1]:2222" in response.data["errors"]["known_hosts"][0]
    plain = _create(admin_api, known_hosts=f"127.0.0.1 {_some_host_key()}")  # port 22's entry, not 2222's
    assert plain.status_code == 400 and "[host]:port" in plain.data["errors"]["known_hosts"][0]
    assert not Repository.objects.exists()


def test_known_hosts_lines_naming_the_host_plainly_hashed_or_among_others_pin_its_key(admin_api, enterprise_license):
    import paramiko

    key = _some_host_key()
    hashed = paramiko.HostKeys.hash_host("[127.0.0.1]:2222")
    lines = [
        f"[127.0.0.1]:2222 {key}",
        f"{hashed} {key}",
        f"github.com {_some_host_key()}\ngitlab.com,[127.0.0.1]:2222 {key}",
        key + " root@server",  # a host's .pub file names no host
    ]
    for n, text in enumerate(lines):
        response = _create(admin_api, name=f"r{n}", known_hosts=text)
        assert response.status_code == 201, (text, response.data)
        assert response.data["host_key_confirmed"]


# --- Connections: in the worker, outbound rules first, one message, one log line ---------------------


def test_a_refused_port_and_a_silent_one_read_the_same(admin_api, enterprise_license, listener, quick_timeout):
    silent = listener("silent")
    refused_port = free_port()
    answers = []
    for name, port in (("refused", refused_port), ("silent", silent.port)):
        created = admin_api.post(API, {"name": name, "url": f"ssh://git@127.0.0.1:{port}/x.git"}, format="json")
        assert created.status_code == 201 and created.data["host_key_scan"] == HostKeyScan.PENDING
        tasks.scan_host_key(created.data["id"])
        polled = admin_api.get(f"{API}/{created.data['id']}").data
        answers.append((polled["host_key_scan"], polled["host_key_scan_error"].replace(str(port), "PORT")))

    assert answers[0] == answers[1] == (HostKeyScan.FAILED, "The panel could not reach 127.0.0.1:PORT over SSH.")
    assert silent.accepted == 1


def test_outbound_deny_networks_refuse_git_hosts_before_any_connection(
    admin_user, enterprise_license, listener, settings, settings_dir
):
    target = listener("silent")
    url = f"ssh://git@127.0.0.1:{target.port}/x.git"
    scanned = services.repository_connect(actor=admin_user, name="scan", url=url)
    pinned = services.repository_connect(
        actor=admin_user, name="pinned", url=url, known_hosts=f"[127.0.0.1]:{target.port} {_some_host_key()}"
    )
    settings.OUTBOUND_DENY_NETWORKS = ["127.0.0.0/8"]

    tasks.scan_host_key(scanned.pk)
    run = sync(pinned)

    scanned.refresh_from_db()
    assert scanned.host_key_scan_error == f"The panel could not reach 127.0.0.1:{target.port} over SSH."
    assert run.status == SyncStatus.FAILED and run.errors == [scanned.host_key_scan_error]
    assert target.accepted == 0  # refused before connecting


@pytest.mark.parametrize("mode", ["refused", "close"])
def test_a_failed_connect_logs_one_line_without_a_traceback(
    mode, admin_user, enterprise_license, listener, settings_dir, caplog
):
    port = free_port() if mode == "refused" else listener("close").port
    repo = services.repository_connect(
        actor=admin_user,
        name="r",
        url=f"ssh://git@127.0.0.1:{port}/x.git",
        known_hosts=f"[127.0.0.1]:{port} {_some_host_key()}",
    )
    caplog.clear()

    with caplog.at_level(logging.DEBUG):
        run = sync(repo)

    assert run.status == SyncStatus.FAILED
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in loud] == ["gitops.sync"] and loud[0].exc_info is None
    assert not [r for r in caplog.records if r.name.startswith("paramiko") and r.levelno >= logging.ERROR]


# --- Values that cannot be stored ---------------------------------------------------------------


def test_desired_config_values_and_keys_with_nul_are_refused_by_the_api(admin_api, enterprise_license, fleet):
    for body in (
        {"level": "fleet", "key": "motd", "value": "a\u0000b"},
        {"level": "fleet", "key": "mo\u0000td", "value": "a"},
        {"level": "group", "target": "we\u0000b", "key": "motd", "value": "a"},
    ):
        response = admin_api.post(f"{API}/desired-config", body, format="json")
        assert response.status_code == 400 and response.data["errors"], response.data
    entry, _planning = services.desired_entry_set(actor=None, level="fleet", target="", key="motd", value="ok")
    assert admin_api.put(f"{API}/desired-config/{entry.pk}", {"value": "x\u0000"}, format="json").status_code == 400
    assert list(DesiredEntry.objects.values_list("value", flat=True)) == ["ok"]


def test_desired_config_values_with_nul_are_refused_on_the_form_field(admin_client, enterprise_license, fleet):
    page = admin_client.post(
        "/governance/gitops/config/", {"level": "fleet", "target": "", "key": "motd", "value": '"a\x00b"'}
    ).content.decode()
    assert "is-invalid" in page and "Null characters are not allowed" in page
    assert not DesiredEntry.objects.exists()


def test_the_service_refuses_every_unstorable_value_whatever_calls_it(fleet):
    from common.exceptions import ApplicationError

    for key, value in (("motd", "a\x00b"), ("motd", "\ud800"), ("ratio", float("inf")), ("motd", "x" * 5000)):
        with pytest.raises(ApplicationError) as exc:
            services.desired_entry_set(actor=None, level="fleet", target="", key=key, value=value)
        assert list(exc.value.errors) == ["value"]


def test_yaml_files_follow_the_same_rules_with_file_and_line():
    files = {
        "fleet.yaml": b'settings:\n  ok: 1\n  motd: "a\\0b"\n  ratio: .inf\napps:\n  nginx: "1.0 beta"\n',
        "groups/web.yaml": b'settings:\n  odd: "\\ud800"\n',
    }
    with pytest.raises(CommitInvalid) as exc:
        parse_commit(files, groups={"web"}, instances=set())
    found = [str(i) for i in exc.value.issues]
    assert found == [
        "fleet.yaml, line 3: setting 'motd' cannot be stored: NUL characters are not allowed.",
        "fleet.yaml, line 4: setting 'ratio' must be a finite number",
        "fleet.yaml, line 6: app 'nginx': '1.0 beta' is not a version such as 1.4.2 (or 'absent')",
        "groups/web.yaml, line 2: YAML syntax error: while parsing a quoted scalar found invalid Unicode character escape code",
    ]


# --- The license is checked in the services -----------------------------------------------------------


def test_a_downgraded_panel_stops_driving_the_fleet_from_git(connect, git_repo, fleet, install_license, admin_user):
    git_repo.write_config("fleet.yaml", {"ntp.server": "a"})
    git_repo.commit()
    repo = connect()
    assert sync(repo).status == SyncStatus.APPLIED
    install_license("business")

    assert services.repository_sync(repository_id=repo.pk) is None
    assert SyncRun.objects.count() == 1
    assert services.instance_reconcile(instance_id=fleet["web-01"].pk) == []
    assert tasks.sync_due_repositories() == 0
    preview = services.repository_preview_request(actor=admin_user, repository=repo)  # queued before the downgrade
    preview = services.repository_preview(run_id=preview.pk)
    assert preview.status == SyncStatus.FAILED and preview.errors == ["The license does not include gitops."]
