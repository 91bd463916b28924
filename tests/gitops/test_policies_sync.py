"""policies/ in a GitOps repository: a commit adds, changes and removes policies; an invalid policy file
blocks the whole commit; Git-owned policies are read-only in the API and the UI. Real sshd and Git."""

import pytest

from fleet.scopes import Scope
from gitops import services as gitops_services
from gitops import tasks
from gitops.choices import Level, RepositoryStatus, SyncStatus
from gitops.models import DesiredEntry
from governance import services as governance
from governance.models import Policy
from tests.base import assert_status

from .conftest import sync

pytestmark = pytest.mark.integration

AGENT = """\
name: Require agent
type: required_apps
scope: {kind: groups, groups: [web]}
rules:
  apps:
    - name: monitoring-agent
      min_version: "1.4"
"""
TELNET = """\
name: No telnet
type: blocked_apps
rules:
  apps: [{pattern: "telnet*"}]
"""


def test_a_commit_adds_changes_and_removes_policies_and_the_run_lists_them(connect, git_repo, fleet, admin_client):
    git_repo.write("policies/agent.yaml", AGENT)
    git_repo.write("policies/telnet.yaml", TELNET)
    first = git_repo.commit("policies")
    repo = connect()

    run = sync(repo)

    assert run.status == SyncStatus.APPLIED, run.errors
    agent = Policy.objects.get(name="Require agent")
    assert (agent.git_repository, agent.git_path, agent.git_commit) == (repo, "policies/agent.yaml", first)
    assert [g.name for g in agent.scope_groups.all()] == ["web"]
    assert {(c["policy"], c["action"]) for c in run.policy_changes} == {
        ("Require agent", "created"),
        ("No telnet", "created"),
    }
    v1 = agent.versions.get()
    assert (v1.source, v1.commit_sha, v1.repository_name, v1.git_path) == (
        "git",
        first,
        repo.name,
        "policies/agent.yaml",
    )

    git_repo.write("policies/agent.yaml", AGENT.replace('"1.4"', '"1.5"'))
    git_repo.remove("policies/telnet.yaml")
    second = git_repo.commit("raise the minimum, drop telnet")
    run = sync(repo)

    assert run.status == SyncStatus.APPLIED, run.errors
    assert sorted((c["policy"], c["action"]) for c in run.policy_changes) == [
        ("No telnet", "disabled"),
        ("Require agent", "changed"),
    ]
    agent.refresh_from_db()
    assert agent.rules["apps"][0]["min_version"] == "1.5" and agent.git_commit == second
    telnet = Policy.objects.get(name="No telnet")
    assert not telnet.enabled and telnet.git_repository is None  # disabled, and the panel owns it again
    assert [v.change for v in telnet.versions.order_by("number")] == ["created", "disabled"]
    assert agent.versions.order_by("-number").first().commit_sha == second
    page = admin_client.get(run.get_absolute_url()).content.decode()
    assert 'id="run-policy-changes"' in page and "No telnet" in page and "disabled" in page


def test_an_invalid_policy_file_blocks_the_whole_commit(connect, git_repo, fleet):
    git_repo.write_config("fleet.yaml", {"ssh.password_auth": False})
    git_repo.write("policies/agent.yaml", AGENT)
    good = git_repo.commit()
    repo = connect()
    assert sync(repo).status == SyncStatus.APPLIED

    git_repo.write_config("fleet.yaml", {"ssh.password_auth": True})  # a valid change of the same commit
    git_repo.write("policies/agent.yaml", AGENT.replace('"1.4"', '"1.5"'))  # a valid policy change
    git_repo.write("policies/bad.yaml", TELNET.replace("No telnet", "Bad").replace("pattern", "patern"))
    git_repo.commit("one bad file")
    run = sync(repo)

    assert run.status == SyncStatus.INVALID
    assert run.errors and all(e.startswith("policies/bad.yaml, line 4: rules.apps[0].pat") for e in run.errors), (
        run.errors
    )
    assert any("Unknown key 'patern'" in e for e in run.errors)
    assert repo.status == RepositoryStatus.INVALID and repo.last_commit_sha == good
    assert Policy.objects.get(name="Require agent").rules["apps"][0]["min_version"] == "1.4"
    assert not Policy.objects.filter(name="Bad").exists()
    assert DesiredEntry.objects.get(level=Level.FLEET, key="ssh.password_auth").value is False
    assert run.policy_changes == []


def test_a_policy_another_repository_owns_makes_the_later_sync_invalid_naming_both(
    connect, git_repo, other_git_repo, fleet
):
    git_repo.write("policies/agent.yaml", AGENT)
    git_repo.commit()
    first = connect()
    assert sync(first).status == SyncStatus.APPLIED
    other_git_repo.write("policies/mine.yaml", AGENT.replace('"1.4"', '"2.0"'))
    other_git_repo.commit()
    second = connect(name="other-config", git=other_git_repo)

    run = sync(second)

    assert run.status == SyncStatus.INVALID
    [error] = run.errors
    assert error.startswith(
        "policies/mine.yaml, line 1: policy 'Require agent' is managed by repository 'fleet-config'"
    )
    assert "'other-config' cannot define it too" in error
    assert Policy.objects.get(name="Require agent").git_repository == first


def test_a_panel_policy_of_the_same_name_is_taken_over_by_the_repository(connect, git_repo, fleet):
    governance.policy_create(
        actor=None, name="Require agent", policy_type="required_apps", rules={"apps": [{"name": "x"}]}, scope=Scope()
    )
    git_repo.write("policies/agent.yaml", AGENT)
    git_repo.commit()
    repo = connect()
    run = sync(repo)
    assert run.status == SyncStatus.APPLIED, run.errors
    policy = Policy.objects.get(name="Require agent")
    assert policy.git_repository == repo and policy.rules["apps"][0]["name"] == "monitoring-agent"
    assert [c["action"] for c in run.policy_changes] == ["changed"]


def test_git_owned_policies_are_read_only_in_the_api_and_the_ui(connect, git_repo, fleet, admin_api, admin_client):
    git_repo.write("policies/agent.yaml", AGENT)
    git_repo.commit()
    repo = connect()
    sync(repo)
    policy = Policy.objects.get(name="Require agent")
    url = f"/api/governance/policies/{policy.pk}"

    detail = admin_api.get(url)
    assert (
        detail.data["git"]["repository_name"] == "fleet-config" and detail.data["git"]["path"] == "policies/agent.yaml"
    )
    for response in (
        admin_api.patch(url, {"description": "mine now"}, format="json"),
        admin_api.post(f"{url}/disable"),
        admin_api.delete(url),
    ):
        assert_status(response, 409)
        assert response.data["error"] == "policy_managed_by_git"
        assert "'fleet-config' (policies/agent.yaml)" in response.data["message"]
    imported = admin_api.post("/api/governance/policies/import", {"yaml": AGENT}, format="json")
    assert_status(imported, 400)
    assert "managed by repository 'fleet-config'" in imported.data["message"]

    page = admin_client.get(f"/governance/policies/{policy.pk}/")
    assert "Managed by GitOps repository" in page.content.decode() and policy.git_commit[:12] in page.content.decode()
    edit = admin_client.get(f"/governance/policies/{policy.pk}/edit/")
    assert "policies/agent.yaml" in edit.content.decode() and "disabled>Save" in edit.content.decode()
    posted = admin_client.post(f"/governance/policies/{policy.pk}/edit/", {"name": "Renamed"})
    assert posted.status_code == 409 and "fleet-config" in posted.content.decode()
    admin_client.post(f"/governance/policies/{policy.pk}/delete/")
    policy.refresh_from_db()
    assert policy.name == "Require agent" and policy.enabled and policy.description == ""


def test_a_preview_lists_the_policy_changes_and_applies_none(connect, git_repo, fleet, admin_api, queued_syncs):
    git_repo.write("policies/agent.yaml", AGENT)
    git_repo.commit()
    repo = connect()
    response = admin_api.post(f"/api/governance/gitops/{repo.pk}/preview")
    assert response.status_code == 202
    tasks.preview_repository(response.data["id"])
    preview = admin_api.get(f"/api/governance/gitops/runs/{response.data['id']}").data
    assert preview["status"] == SyncStatus.PREVIEW
    assert preview["policy_changes"] == [
        {"policy": "Require agent", "action": "created", "file": "policies/agent.yaml", "fields": []}
    ]
    assert not Policy.objects.exists()


def test_syncing_back_to_an_older_commit_restores_its_policies_as_a_new_version(connect, git_repo, fleet):
    git_repo.write("policies/agent.yaml", AGENT)
    first = git_repo.commit()
    repo = connect()
    sync(repo)
    git_repo.write("policies/agent.yaml", AGENT.replace('"1.4"', '"1.9"'))
    git_repo.commit()
    sync(repo)

    run = governance_sync_to(repo, first)

    assert run.status == SyncStatus.APPLIED, run.errors
    policy = Policy.objects.get(name="Require agent")
    assert policy.rules["apps"][0]["min_version"] == "1.4" and policy.git_commit == first
    assert [(v.number, v.commit_sha == first) for v in policy.versions.order_by("number")] == [
        (1, True),
        (2, False),
        (3, True),
    ]


def governance_sync_to(repo, revision):
    run = gitops_services.repository_sync(repository_id=repo.pk, trigger="revision", revision=revision[:10])
    repo.refresh_from_db()
    return run
