"""Operations pages: the command queue, the New Command form with its target preview, runs and reverts."""

import html

import pytest
from django.urls import reverse
from django.utils import timezone

from common.models import AuditEntry
from fleet import services
from fleet.choices import InstanceStatus, RunStatus
from fleet.models import Command, CommandRun, Instance
from tests.base import assert_status

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return html.unescape(response.content.decode())


def make_instance(name, *, groups=(), tags=(), apps=(), settings=None):
    instance = Instance.objects.create(
        name=name,
        status=InstanceStatus.ONLINE,
        last_seen_at=timezone.now(),
        os_version="24.04",
        apps=list(apps),
        settings=settings or {},
    )
    instance.groups.set(groups)
    instance.tags.set(services.tags_get_or_create(list(tags)))
    return instance


@pytest.fixture
def fleet(admin_user):
    web = services.group_create(actor=admin_user, name="web")
    nginx = [{"name": "nginx", "version": "1.24", "running": True}]
    return {
        "web": web,
        "web1": make_instance(
            "web-01", groups=[web], tags=["env=production"], apps=nginx, settings={"ssh.password_auth": True}
        ),
        "web2": make_instance("web-02", groups=[web], tags=["env=staging"], apps=nginx),
        "db1": make_instance("db-01", tags=["env=production", "role=db"]),
    }


def finish(run: CommandRun, status=RunStatus.COMPLETED, error=""):
    """What an agent does: pick the run up, then report its result (through the services)."""
    services.agent_commands_fetch(instance=run.instance)
    services.command_run_report(instance=run.instance, run_id=run.pk, status=status, error=error, output="done")
    run.refresh_from_db()
    return run


def form_data(**overrides):
    data = {
        "kind": "install_app",
        "app": "monitoring-agent",
        "version": "",
        "config_values": "",
        "config_unset": "",
        "description": "",
        "scope_kind": "all",
        "scope_tags": "",
    }
    data.update(overrides)
    return data


# --- New command -------------------------------------------------------------------------------


def test_an_operator_queues_a_command_for_a_group(operator_client, fleet):
    response = operator_client.post(
        reverse("fleet:command_create"),
        form_data(kind="update_app", app="nginx", version="1.26", scope_kind="groups", scope_groups=[fleet["web"].pk]),
    )
    command = Command.objects.get()
    assert response["Location"] == command.get_absolute_url()
    assert command.kind == "update_app" and command.params == {"app": "nginx", "version": "1.26"}
    assert sorted(r.instance.name for r in command.runs.all()) == ["web-01", "web-02"]
    assert command.runs.first().before_state == {"installed": True, "version": "1.24", "running": True}
    assert AuditEntry.objects.filter(action="command.create", actor_label="oscar").exists()
    page = operator_client.get(response["Location"])
    assert "Command queued: update_app nginx → 1.26 on 2 instances." in text(page)


def test_set_config_takes_key_value_lines_and_keys_to_remove(operator_client, fleet):
    operator_client.post(
        reverse("fleet:command_create"),
        form_data(
            kind="set_config",
            config_values="ssh.password_auth=false\nmax.sessions = 10\nmotd=hello world",
            config_unset="legacy.option",
            scope_kind="tags",
            scope_tags="env=production",
        ),
    )
    command = Command.objects.get()
    assert command.params == {
        "values": {"ssh.password_auth": False, "max.sessions": 10, "motd": "hello world"},
        "unset": ["legacy.option"],
    }
    assert sorted(r.instance.name for r in command.runs.all()) == ["db-01", "web-01"]


@pytest.mark.parametrize(
    "data,message",
    [
        ({"kind": "update_app", "app": "nginx", "version": ""}, "'version' must be a version such as 1.4.2."),
        ({"kind": "install_app", "app": "Bad Name!"}, "'app' must be an app name such as monitoring-agent"),
        (
            {"kind": "set_config", "config_values": "ssh.password_auth"},
            "Line 1 ('ssh.password_auth') is not key=value.",
        ),
        ({"kind": "set_config"}, "set_config needs at least one key in 'values' or 'unset'."),
        ({"scope_kind": "tags", "scope_tags": "env=nowhere"}, "The target matches no instances: nothing would run."),
        ({"scope_kind": "tags", "scope_tags": "production"}, "'production' is not a tag: write key=value"),
        ({"scope_kind": "groups"}, "Choose at least one group for a group scope."),
    ],
)
def test_bad_command_input_is_explained_in_words_and_nothing_is_queued(operator_client, fleet, data, message):
    response = operator_client.post(reverse("fleet:command_create"), form_data(**data))
    assert response.status_code == 200
    assert text(response).count(message) == 1  # on the form, not repeated as a flash message
    assert not Command.objects.exists() and not CommandRun.objects.exists()


def test_viewers_cannot_open_or_submit_the_command_form(viewer_client, fleet):
    assert viewer_client.get(reverse("fleet:command_create")).status_code == 403
    assert viewer_client.post(reverse("fleet:command_create"), form_data()).status_code == 403
    assert not Command.objects.exists()
    assert "New command" not in viewer_client.get(reverse("fleet:command_list")).content.decode()


def test_send_command_from_a_server_preselects_it(operator_client, fleet):
    response = operator_client.get(reverse("fleet:command_create"), {"instance": fleet["db1"].pk})
    form = response.context["form"]
    assert form.initial["scope_kind"] == "instances" and form.initial["scope_instances"] == [fleet["db1"].pk]
    body = response.content.decode()
    assert "data-scope-picker" in body and 'data-scope-for="instances"' in body and 'data-scope-for="tags"' in body


# --- Target preview ----------------------------------------------------------------------------


def test_target_preview_shows_the_matching_instances(operator_client, fleet):
    url = reverse("fleet:target_preview")
    response = operator_client.get(url, {"scope_kind": "tags", "scope_tags": "env=production"})
    assert response.context["count"] == 2 and response.context["names"] == ["db-01", "web-01"]
    assert "2 instances" in text(response)
    response = operator_client.get(url, {"scope_kind": "groups", "scope_groups": [fleet["web"].pk]})
    assert response.context["names"] == ["web-01", "web-02"]
    response = operator_client.get(url, {"scope_kind": "all"})
    assert response.context["count"] == 3


def test_target_preview_lists_the_first_names_and_how_many_more(operator_client, db):
    for i in range(14):
        make_instance(f"srv-{i:02}", tags=["env=production"])
    response = operator_client.get(
        reverse("fleet:target_preview"), {"scope_kind": "tags", "scope_tags": "env=production"}
    )
    assert response.context["count"] == 14 and len(response.context["names"]) == 10
    assert "and 4 more" in text(response)


def test_target_preview_explains_targets_that_match_nothing_or_are_malformed(operator_client, fleet):
    url = reverse("fleet:target_preview")
    assert "No instances match this target" in text(
        operator_client.get(url, {"scope_kind": "tags", "scope_tags": "env=qa"})
    )
    assert "is not a tag" in text(operator_client.get(url, {"scope_kind": "tags", "scope_tags": "qa"}))
    assert "<html" not in text(operator_client.get(url, {"scope_kind": "all"}))


# --- Queue, detail, runs -----------------------------------------------------------------------


def queue(actor, *, kind="restart_app", params=None, instances):
    scope = services.scope_from_input(kind="instances", instances=instances)
    return services.command_create(actor=actor, kind=kind, params=params or {"app": "nginx"}, scope=scope)


def test_the_queue_shows_live_run_counts_per_status(viewer_client, admin_user, fleet):
    command = queue(admin_user, instances=[fleet["web1"], fleet["web2"], fleet["db1"]])
    runs = {r.instance.name: r for r in command.runs.select_related("instance")}
    finish(runs["web-01"])
    finish(runs["web-02"], status=RunStatus.FAILED, error="nginx is not responding")
    response = viewer_client.get(reverse("fleet:command_list"), HTTP_HX_REQUEST="true")
    body = text(response)
    assert body.startswith("<tbody") and 'hx-trigger="every 3s"' in body
    assert "1 pending" in body and "1 completed" in body and "1 failed" in body


def test_filtering_the_queue_by_server_keeps_each_commands_full_counts(viewer_client, admin_user, fleet):
    queue(admin_user, instances=[fleet["web1"], fleet["web2"]])
    queue(admin_user, instances=[fleet["db1"]])
    response = viewer_client.get(reverse("fleet:command_list"), {"instance": fleet["web1"].pk})
    commands = list(response.context["commands"])
    assert len(commands) == 1 and commands[0].run_total == 2


def test_command_detail_refreshes_until_every_run_has_finished(viewer_client, admin_user, fleet):
    command = queue(admin_user, instances=[fleet["web1"]])
    url = command.get_absolute_url()
    live = viewer_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 3s"' in live and "<html" not in live
    finish(command.runs.get())
    done = viewer_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in done and "badge-status-completed" in done


def test_run_detail_shows_before_state_output_error_and_the_inverse(viewer_client, admin_user, fleet):
    command = queue(
        admin_user, kind="update_app", params={"app": "nginx", "version": "1.26"}, instances=[fleet["web1"]]
    )
    run = finish(command.runs.get(), status=RunStatus.FAILED, error="download failed: 404")
    body = text(viewer_client.get(run.get_absolute_url()))
    assert "version: 1.24" in body and "download failed: 404" in body and "done" in body
    assert "update_app nginx → 1.24" in body
    assert "Revert this change" not in body  # failed runs are not offered a revert; viewers never are


def test_an_operator_reverts_a_completed_run_with_its_exact_inverse(operator_client, admin_user, fleet):
    command = queue(
        admin_user, kind="update_app", params={"app": "nginx", "version": "1.26"}, instances=[fleet["web1"]]
    )
    run = finish(command.runs.get())
    assert "Revert this change" in operator_client.get(run.get_absolute_url()).content.decode()
    response = operator_client.post(reverse("fleet:run_revert", args=[command.pk, run.pk]))
    revert = Command.objects.exclude(pk=command.pk).get()
    assert response["Location"] == revert.get_absolute_url()
    assert revert.kind == "update_app" and revert.params == {"app": "nginx", "version": "1.24"}
    assert revert.inverse_of == command and [r.instance.name for r in revert.runs.all()] == ["web-01"]
    assert AuditEntry.objects.filter(action="command.create", actor_label="oscar").exists()


def test_a_run_that_has_not_completed_cannot_be_reverted(operator_client, admin_user, fleet):
    command = queue(admin_user, kind="stop_app", instances=[fleet["web1"]])
    run = command.runs.get()
    response = operator_client.post(reverse("fleet:run_revert", args=[command.pk, run.pk]), follow=True)
    assert "Only a completed run can be reverted; this one is pending." in text(response)
    assert Command.objects.count() == 1


def test_a_restart_has_nothing_to_revert(operator_client, admin_user, fleet):
    command = queue(admin_user, kind="restart_app", instances=[fleet["web1"]])
    run = finish(command.runs.get())
    response = operator_client.post(reverse("fleet:run_revert", args=[command.pk, run.pk]), follow=True)
    assert "changed nothing that can be reverted" in text(response)
    assert Command.objects.count() == 1


def test_viewers_cannot_revert(viewer_client, admin_user, fleet):
    command = queue(admin_user, kind="stop_app", instances=[fleet["web1"]])
    run = finish(command.runs.get())
    assert viewer_client.post(reverse("fleet:run_revert", args=[command.pk, run.pk])).status_code == 403
    assert viewer_client.get(reverse("fleet:run_revert", args=[command.pk, run.pk])).status_code == 403
    assert Command.objects.count() == 1


def test_the_empty_queue_explains_commands(viewer_client, db):
    response = viewer_client.get(reverse("fleet:command_list"))
    assert_status(response, 200)
    assert "The queue is empty" in response.content.decode()


def test_the_queue_page_does_not_add_queries_as_commands_and_runs_grow(viewer_client, admin_user, fleet):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def grow(n):
        for i in range(n):
            scope = services.scope_from_input(kind="groups", groups=[fleet["web"]]) if i % 2 else None
            scope = scope or services.scope_from_input(kind="instances", instances=[fleet["web1"], fleet["db1"]])
            services.command_create(actor=admin_user, kind="restart_app", params={"app": f"app{i}"}, scope=scope)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert viewer_client.get(reverse("fleet:command_list")).status_code == 200
        return len(ctx)

    grow(3)
    small = count()
    grow(20)
    assert count() == small


def test_run_detail_refreshes_itself_until_the_run_finishes(viewer_client, admin_user, fleet):
    command = queue(admin_user, kind="stop_app", instances=[fleet["web1"]])
    run = command.runs.get()
    assert 'hx-select="#run-live"' in viewer_client.get(run.get_absolute_url()).content.decode()
    finish(run)
    assert 'hx-select="#run-live"' not in viewer_client.get(run.get_absolute_url()).content.decode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "restart_app", "app": "Not An App"}, "app"),
        ({"kind": "update_app", "app": "nginx", "version": "banana"}, "version"),
        ({"kind": "set_config", "config_values": "bad key=1"}, "config_values"),
    ],
)
def test_a_parameter_the_queue_refuses_is_shown_on_its_own_input(operator_client, fleet, data, field):
    """The queue's `params.app` / `params.version` / `params.values` land on the input that edits them
    (red outline and the message under it), as the API names them, not as a banner above the form."""
    response = operator_client.post(reverse("fleet:command_create"), form_data(**data))
    assert response.status_code == 200
    form = response.context["form"]
    assert list(form.errors) == [field], form.errors
    assert not form.non_field_errors()
    assert not Command.objects.exists()
