"""The command queue: lifecycle, deadlines that fail runs with a reason, and exact inverses."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common.exceptions import ApplicationError
from fleet import commands as logic
from fleet import services
from fleet.choices import CommandSource, RunStatus, ScopeKind
from fleet.choices import CommandType as T
from fleet.models import CommandRun
from fleet.scopes import Scope
from fleet.signals import command_run_finished

from .helpers import make_instance

STATE = {
    "os_version": "24.04.1",
    "apps": [
        {"name": "nginx", "version": "1.24.0", "running": True},
        {"name": "postgresql", "version": "15.8", "running": False},
    ],
    "settings": {"ssh.password_auth": True, "firewall.enabled": False},
}


def only(instance):
    return Scope(kind=ScopeKind.INSTANCES, instance_ids=(instance.pk,))


def send(instance, kind, params, **kw):
    return services.command_create(actor=None, kind=kind, params=params, scope=only(instance), **kw)


def deliver_and_finish(run, status=RunStatus.COMPLETED, **kw):
    services.agent_commands_fetch(instance=run.instance)
    return services.command_run_report(instance=run.instance, run_id=run.pk, status=status, **kw)


# --- lifecycle -----------------------------------------------------------------------------------


def test_a_command_to_a_tag_filter_makes_one_pending_run_per_matching_instance(db):
    a = make_instance("a", tags=["env=production"])
    make_instance("b", tags=["env=staging"])
    c = make_instance("c", tags=["env=production"])
    scope = Scope(kind=ScopeKind.TAGS, tags=("env=production",))
    command = services.command_create(actor=None, kind=T.RESTART_APP, params={"app": "nginx"}, scope=scope)
    runs = command.runs.order_by("instance__name")
    assert [(r.instance_id, r.status) for r in runs] == [(a.pk, RunStatus.PENDING), (c.pk, RunStatus.PENDING)]


def test_a_command_matching_no_instance_is_refused_and_nothing_is_saved(db):
    make_instance("a", tags=["env=staging"])
    scope = Scope(kind=ScopeKind.TAGS, tags=("env=production",))
    with pytest.raises(ApplicationError, match="matches no instances"):
        services.command_create(actor=None, kind=T.RESTART_APP, params={"app": "nginx"}, scope=scope)
    assert not CommandRun.objects.exists()


def test_bad_parameters_are_refused_with_the_reason(db):
    a = make_instance("a")
    with pytest.raises(ApplicationError, match="'version' must be a version"):
        send(a, T.UPDATE_APP, {"app": "nginx"})
    with pytest.raises(ApplicationError, match="Unknown command type"):
        send(a, "reboot", {})


def test_a_run_goes_pending_running_completed(db):
    a = make_instance("a", state=STATE)
    run = send(a, T.UPDATE_APP, {"app": "nginx", "version": "1.26.2"}).runs.get()
    assert run.status == RunStatus.PENDING
    [delivered] = services.agent_commands_fetch(instance=a)
    assert delivered.status == RunStatus.RUNNING
    done = services.command_run_report(instance=a, run_id=run.pk, status=RunStatus.COMPLETED, output="ok")
    assert done.status == RunStatus.COMPLETED and done.finished_at is not None


def test_a_finished_run_signals_other_apps(db, django_capture_on_commit_callbacks):
    a = make_instance("a", state=STATE)
    run = send(a, T.STOP_APP, {"app": "nginx"}).runs.get()
    seen = []

    def receiver(sender, run_id, status, **kwargs):
        seen.append((run_id, status))

    command_run_finished.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            deliver_and_finish(run, RunStatus.FAILED, error="unit not found")
    finally:
        command_run_finished.disconnect(receiver)
    assert seen == [(run.pk, RunStatus.FAILED)]


def test_the_before_state_of_the_instance_is_recorded_on_each_run(db):
    a = make_instance("a", state=STATE)
    run = send(a, T.UPDATE_APP, {"app": "nginx", "version": "1.26.2"}).runs.get()
    assert run.before_state == {"installed": True, "version": "1.24.0", "running": True}


# --- deadlines -----------------------------------------------------------------------------------


def test_a_run_not_picked_up_in_time_fails_with_the_reason(db):
    a = make_instance("a")
    run = send(a, T.RESTART_APP, {"app": "nginx"}).runs.get()
    assert services.command_runs_expire(now=run.pickup_deadline - timedelta(seconds=1)) == 0
    assert services.command_runs_expire(now=run.pickup_deadline + timedelta(seconds=1)) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "Not picked up" in run.error


def test_a_running_run_without_result_fails_at_its_timeout(db):
    a = make_instance("a")
    run = send(a, T.RESTART_APP, {"app": "nginx"}, timeout_seconds=60).runs.get()
    services.agent_commands_fetch(instance=a)
    run.refresh_from_db()
    assert run.finish_deadline - run.delivered_at == timedelta(seconds=60)
    assert services.command_runs_expire(now=run.finish_deadline + timedelta(seconds=1)) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "within the command timeout" in run.error


def test_a_late_result_after_the_timeout_cannot_revive_the_run(db):
    a = make_instance("a")
    run = send(a, T.RESTART_APP, {"app": "nginx"}).runs.get()
    services.agent_commands_fetch(instance=a)
    services.command_runs_expire(now=timezone.now() + timedelta(days=1))
    with pytest.raises(ApplicationError, match="already failed"):
        services.command_run_report(instance=a, run_id=run.pk, status=RunStatus.COMPLETED)


def test_finished_runs_are_never_expired(db):
    a = make_instance("a")
    run = send(a, T.RESTART_APP, {"app": "nginx"}).runs.get()
    deliver_and_finish(run)
    assert services.command_runs_expire(now=timezone.now() + timedelta(days=1)) == 0


# --- inverses ------------------------------------------------------------------------------------

INVERSE_CASES = [
    ("install new app", T.INSTALL_APP, {"app": "redis", "version": "7.2.5"}, (T.UNINSTALL_APP, {"app": "redis"})),
    (
        "reinstall other version",
        T.INSTALL_APP,
        {"app": "nginx", "version": "1.26.2"},
        (T.UPDATE_APP, {"app": "nginx", "version": "1.24.0"}),
    ),
    ("uninstall", T.UNINSTALL_APP, {"app": "nginx"}, (T.INSTALL_APP, {"app": "nginx", "version": "1.24.0"})),
    (
        "update",
        T.UPDATE_APP,
        {"app": "nginx", "version": "1.26.2"},
        (T.UPDATE_APP, {"app": "nginx", "version": "1.24.0"}),
    ),
    ("stop running app", T.STOP_APP, {"app": "nginx"}, (T.START_APP, {"app": "nginx"})),
    ("start stopped app", T.START_APP, {"app": "postgresql"}, (T.STOP_APP, {"app": "postgresql"})),
    ("restart", T.RESTART_APP, {"app": "nginx"}, None),
    ("update os", T.UPDATE_OS, {"version": "24.04.3"}, (T.UPDATE_OS, {"version": "24.04.1"})),
    (
        "set config",
        T.SET_CONFIG,
        {"values": {"ssh.password_auth": False, "ntp.enabled": True}, "unset": ["firewall.enabled"]},
        (T.SET_CONFIG, {"values": {"ssh.password_auth": True, "firewall.enabled": False}, "unset": ["ntp.enabled"]}),
    ),
]


@pytest.mark.parametrize(("case", "kind", "params", "expected"), INVERSE_CASES, ids=[c[0] for c in INVERSE_CASES])
def test_every_command_type_has_an_inverse_that_restores_the_before_state(case, kind, params, expected):
    clean = logic.validate_params(kind, params)
    before = logic.capture_before_state(kind, clean, STATE)
    inverse = logic.inverse(kind, clean, before)
    if expected is None:
        assert inverse is None
        return
    inv_kind, inv_params = inverse
    assert inv_kind == expected[0]
    assert {k: (sorted(v) if isinstance(v, list) else v) for k, v in inv_params.items()} == {
        k: (sorted(v) if isinstance(v, list) else v) for k, v in expected[1].items()
    }
    after = logic.apply(kind, clean, STATE)
    restored = logic.apply(inv_kind, logic.validate_params(inv_kind, inv_params), after)
    assert restored["os_version"] == STATE["os_version"]
    assert sorted(restored["apps"], key=lambda a: a["name"]) == STATE["apps"]
    assert restored["settings"] == STATE["settings"]


def test_applying_a_command_that_cannot_apply_is_an_error():
    with pytest.raises(logic.CommandParamsError, match="not installed"):
        logic.apply(T.UPDATE_APP, {"app": "redis", "version": "7.4"}, STATE)


def test_reverting_a_run_queues_its_inverse_on_that_instance_only(db):
    a = make_instance("a", state=STATE)
    b = make_instance("b", state=STATE)
    scope = Scope(kind=ScopeKind.ALL)
    command = services.command_create(
        actor=None, kind=T.UPDATE_APP, params={"app": "nginx", "version": "1.26.2"}, scope=scope
    )
    run_a = command.runs.get(instance=a)
    deliver_and_finish(run_a)
    revert = services.command_run_revert(actor=None, run=run_a)
    assert (revert.kind, revert.params, revert.source) == (
        T.UPDATE_APP,
        {"app": "nginx", "version": "1.24.0"},
        CommandSource.ROLLBACK,
    )
    assert revert.inverse_of == command
    assert [r.instance for r in revert.runs.all()] == [a]
    assert b.command_runs.count() == 1


def test_reverting_a_restart_queues_nothing(db):
    a = make_instance("a", state=STATE)
    run = send(a, T.RESTART_APP, {"app": "nginx"}).runs.get()
    deliver_and_finish(run)
    assert services.command_run_revert(actor=None, run=run) is None


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        (T.UPDATE_APP, {"app": "nginx", "version": "banana"}),
        (T.UPDATE_OS, {"version": "jammy"}),
        (T.SET_CONFIG, {"values": {"motd": "x" * 4097}}),
        (T.SET_CONFIG, {"values": {"big": 2**64}}),
    ],
)
def test_a_command_whose_result_an_agent_could_not_report_is_refused(kind, params):
    # The agent reports the changed state in its next heartbeat; a value the heartbeat refuses would
    # leave that instance unable to report at all.
    with pytest.raises(logic.CommandParamsError):
        logic.validate_params(kind, params)
