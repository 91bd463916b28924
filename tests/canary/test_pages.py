"""The HTML pages: list with live phase, create form with preview, detail with live health and actions."""

import pytest

from canary.choices import Phase
from canary.models import CanaryDeployment
from fleet.models import CommandRun
from tests.base import assert_status

from .conftest import agent_finishes
from .helpers import canary_runs, start

FORM = {
    "name": "web-app 2.0",
    "command_kind": "update_app",
    "app": "web-app",
    "version": "2.0",
    "scope_kind": "all",
    "selection": "percentage",
    "canary_percentage": "33",
    "criteria": ["online", "health_check"],
    "success_threshold": "100",
    "health_check_url": "/health",
    "check_interval": "5",
    "max_duration": "60",
    "consecutive_healthy_polls": "1",
    "preflight": "exclude",
    "missing_app": "exclude",
}


@pytest.fixture
def fleet(make_fleet, canary_license):
    return make_fleet(3)


def test_the_list_shows_each_deployment_with_its_phase_and_refreshes_live(fleet, operator_user, viewer_client):
    deployment = start(operator_user, percentage=33, name="web-app 2.0")
    response = viewer_client.get("/governance/canary/")
    assert_status(response, 200)
    html = response.content.decode()
    assert "web-app 2.0" in html and "badge-status-canary" in html
    assert 'hx-trigger="every 3s"' in html
    assert "New canary deployment" not in html  # viewers cannot start one
    rows = viewer_client.get("/governance/canary/?partial=rows", HTTP_HX_REQUEST="true")
    assert "<html" not in rows.content.decode() and deployment.get_absolute_url() in rows.content.decode()


def test_an_empty_list_explains_what_a_canary_is(fleet, operator_client):
    response = operator_client.get("/governance/canary/")
    assert "No canary deployments yet" in response.content.decode()
    assert "New canary deployment" in response.content.decode()


def test_the_preview_probes_nothing_as_the_form_changes_only_on_check_health_now(fleet, operator_client):
    fleet[0].server.mode = "fail"
    response = operator_client.get("/governance/canary/new/preview/", FORM, HTTP_HX_REQUEST="true")
    assert_status(response, 200)
    html = response.content.decode()
    assert "web-1" in html.split('id="preview-canary"')[1].split("</ul>")[0]
    assert "Health not checked yet" in html
    assert sum(i.server.hits for i in fleet) == 0  # no request reached any instance
    checked = operator_client.get("/governance/canary/new/preview/", {**FORM, "probe": "1"}, HTTP_HX_REQUEST="true")
    html = checked.content.decode()
    assert "web-2" in html.split('id="preview-canary"')[1].split("</ul>")[0]
    assert "web-1</strong>: unhealthy before the change: HTTP 500" in html
    assert "web-1, web-3" in html.split('id="preview-rollout"')[1]
    assert "Health checked just now." in html


def test_the_create_page_has_a_check_health_now_button_and_previews_only_on_change(fleet, operator_client):
    html = operator_client.get("/governance/canary/new/").content.decode()
    assert 'hx-trigger="change delay:400ms, load"' in html  # never on keystrokes
    assert 'id="check-health"' in html and '"probe": "1"' in html


def test_the_preview_warns_about_instances_that_lack_the_app(fleet, operator_client):
    fleet[2].apps = []
    fleet[2].save()
    html = operator_client.get("/governance/canary/new/preview/", FORM, HTTP_HX_REQUEST="true").content.decode()
    assert "web-3</strong>: web-app is not installed" in html.split('id="preview-missing"')[1]
    refuse = operator_client.get(
        "/governance/canary/new/preview/", {**FORM, "missing_app": "refuse"}, HTTP_HX_REQUEST="true"
    )
    assert "The start would be refused: 1 instance(s) in scope lack web-app" in refuse.content.decode()


def test_creating_from_the_form_starts_the_deployment(fleet, operator_client):
    response = operator_client.post("/governance/canary/new/", FORM)
    deployment = CanaryDeployment.objects.get()
    assert response.status_code == 302 and response["Location"] == deployment.get_absolute_url()
    assert deployment.phase == Phase.CANARY
    assert deployment.criteria == ["online", "health_check"]


def test_a_refused_start_is_shown_on_the_form_and_nothing_is_saved(fleet, operator_client):
    for inst in fleet:
        inst.server.mode = "fail"
    response = operator_client.post("/governance/canary/new/", FORM)
    assert_status(response, 200)
    assert "No canary candidate is online and healthy" in response.content.decode()
    assert not CanaryDeployment.objects.exists()


def test_every_problem_of_the_form_is_shown_on_its_own_field_at_once(fleet, operator_client):
    bad = {**FORM, "health_check_url": "//evil/x", "check_interval": "10", "max_duration": "5", "version": "banana"}
    response = operator_client.post("/governance/canary/new/", bad)
    assert_status(response, 200)
    form = response.context["form"]
    assert "no host, user, // or backslash" in form.errors["health_check_url"][0]
    assert "must be at least the check interval" in form.errors["max_duration"][0]
    assert form.errors["version"] == ["'version' must be a version such as 1.4.2."]
    assert not CanaryDeployment.objects.exists()


def test_further_steps_and_approval_from_the_form(fleet, operator_client):
    response = operator_client.post("/governance/canary/new/", {**FORM, "further_steps": "66", "approve_steps": "on"})
    deployment = CanaryDeployment.objects.get()
    assert response.status_code == 302
    assert deployment.steps == [{"percentage": 33, "approval": True}, {"percentage": 66, "approval": True}]


def test_viewers_cannot_open_the_create_form(fleet, viewer_client):
    assert_status(viewer_client.get("/governance/canary/new/"), 403)
    assert_status(viewer_client.post("/governance/canary/new/", FORM), 403)


def test_the_detail_page_shows_live_health_chart_timeline_and_confirmed_actions(fleet, operator_user, operator_client):
    deployment = start(operator_user, percentage=33, consecutive_healthy=2)
    agent_finishes(canary_runs(deployment))
    from canary.services import canary_advance

    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    response = operator_client.get(deployment.get_absolute_url())
    assert_status(response, 200)
    html = response.content.decode()
    assert 'data-chart="share-chart"' in html and 'id="share-chart"' in html
    assert f'hx-get="/governance/canary/{deployment.pk}/?partial=live"' in html
    assert "round 1 at" in html  # the per-instance timeline
    assert 'data-confirm="Promote now?' in html.replace("\n", " ")
    assert 'data-confirm="Roll back now?' in html
    assert "2 instances will get the change if the canary passes" in html
    live = operator_client.get(deployment.get_absolute_url() + "?partial=live", HTTP_HX_REQUEST="true")
    assert "<html" not in live.content.decode() and "Evaluation" in live.content.decode()


def test_viewers_see_the_detail_without_action_buttons(fleet, operator_user, viewer_client):
    deployment = start(operator_user, percentage=33)
    html = viewer_client.get(deployment.get_absolute_url()).content.decode()
    assert "Promote to all instances" not in html and "Roll back" not in html
    assert_status(viewer_client.post(f"/governance/canary/{deployment.pk}/promote/"), 403)


def test_promote_and_rollback_buttons_call_the_service_and_report_conflicts(fleet, operator_user, operator_client):
    deployment = start(operator_user, percentage=33)
    response = operator_client.post(f"/governance/canary/{deployment.pk}/rollback/", {"reason": "errors"}, follow=True)
    deployment.refresh_from_db()
    assert deployment.phase == Phase.ROLLBACK
    assert "is rolling back" in response.content.decode()
    assert "Rolled back by oscar: errors" in response.content.decode()
    response = operator_client.post(f"/governance/canary/{deployment.pk}/promote/", follow=True)
    assert "Cannot promote this deployment: it is already rolling back." in response.content.decode()


def test_without_the_license_the_pages_show_the_upgrade_page(make_fleet, install_license, operator_client):
    install_license("pro")
    response = operator_client.get("/governance/canary/")
    assert_status(response, 402)
    assert "Upgrade to Business" in response.content.decode()


def test_the_live_refresh_removes_the_action_buttons_once_decided_and_stops_polling_at_the_end(
    fleet, operator_user, operator_client
):
    deployment = start(operator_user, percentage=33)
    url = deployment.get_absolute_url() + "?partial=live"
    live = operator_client.get(url, HTTP_HX_REQUEST="true")
    assert live.status_code == 200
    assert 'id="canary-actions" hx-swap-oob="true"' in live.content.decode()
    assert "Promote to all instances" in live.content.decode()

    operator_client.post(f"/governance/canary/{deployment.pk}/rollback/", {"reason": "errors"})
    live = operator_client.get(url, HTTP_HX_REQUEST="true")
    assert live.status_code == 200  # still rolling back: keep polling
    assert "Promote to all instances" not in live.content.decode()

    CanaryDeployment.objects.filter(pk=deployment.pk).update(phase=Phase.ROLLED_BACK)
    reverts = CommandRun.objects.filter(command__in=deployment.targets.values("revert_command"))
    assert reverts.exists()
    live = operator_client.get(url, HTTP_HX_REQUEST="true")
    assert live.status_code == 200  # ended, but the reverts shown on the page are still running
    agent_finishes(reverts)
    final = operator_client.get(url, HTTP_HX_REQUEST="true")
    assert final.status_code == 286  # htmx swaps this last update and stops polling
    assert "Rolled back" in final.content.decode()


def test_a_failed_rollout_lists_each_reason_once_and_the_commands_are_in_the_live_part(
    fleet, operator_user, operator_client
):
    from canary.services import canary_advance
    from fleet.choices import RunStatus

    deployment = start(operator_user, percentage=33, success_threshold=66)
    agent_finishes(canary_runs(deployment))
    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)  # promoted: the rollout is sent
    deployment.refresh_from_db()
    live = operator_client.get(deployment.get_absolute_url() + "?partial=live", HTTP_HX_REQUEST="true").content.decode()
    assert f'href="/operations/{deployment.rollout_command_id}/"' in live  # no reload needed for the link
    runs = list(deployment.rollout_command.runs.order_by("instance__name"))
    agent_finishes(runs[:1])
    agent_finishes(runs[1:], status=RunStatus.FAILED, error="dependency conflict")
    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    deployment.refresh_from_db()
    assert deployment.phase == Phase.FAILED
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    assert html.count("The rollout failed on 1 of 2 instances") == 1
    assert html.count("rollout: dependency conflict") == 1  # listed once, under the reason
    assert 'id="rollout-failures"' not in html


def test_the_health_chart_is_drawn_with_a_single_round(fleet, operator_user, operator_client):
    import json

    from canary.services import canary_advance

    deployment = start(operator_user, percentage=33, consecutive_healthy=2)
    agent_finishes(canary_runs(deployment))
    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    config = json.loads(html.split('id="share-chart" type="application/json">')[1].split("</script>")[0])
    healthy, _counted, threshold = config["data"]["datasets"]  # 2 in a row needed: the counted share too
    assert healthy["data"] == [{"x": 1, "y": 100.0}] and healthy["pointRadius"] > 0
    assert [p["x"] for p in threshold["data"]] == [0.5, 1.5]  # a line across the one round, not a lone point
    assert config["options"]["scales"]["x"]["type"] == "linear"
    assert "Healthy (latest round)" in html and "100.0 %" in html


def test_the_detail_page_shows_the_poll_history_with_filters(fleet, operator_user, viewer_client):
    from canary.services import canary_advance

    deployment = start(operator_user, percentage=66)
    agent_finishes(canary_runs(deployment))
    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    page = viewer_client.get(deployment.get_absolute_url()).content.decode()
    assert f'hx-get="/governance/canary/{deployment.pk}/polls/"' in page
    polls = viewer_client.get(f"/governance/canary/{deployment.pk}/polls/", HTTP_HX_REQUEST="true").content.decode()
    rows = polls.split('id="poll-history"')[1]
    assert rows.count("<tr>") == 3 and "web-1" in rows and "web-2" in rows and ">200<" in rows
    only = viewer_client.get(f"/governance/canary/{deployment.pk}/polls/", {"instance": fleet[1].pk}).content.decode()
    assert "web-1</td>" not in only.split('id="poll-history"')[1]


def test_after_a_license_downgrade_the_pages_still_show_and_stop_a_running_deployment(
    fleet, operator_user, operator_client, install_license
):
    deployment = start(operator_user, percentage=33)
    install_license("pro")
    listing = operator_client.get("/governance/canary/")
    assert_status(listing, 200)
    assert "a running one can still be paused or rolled back" in listing.content.decode()
    assert "New canary deployment" not in listing.content.decode()
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    assert "Roll back" in html and ">Pause<" in html and "Promote to all instances" not in html
    assert_status(operator_client.get("/governance/canary/new/"), 402)
    response = operator_client.post(f"/governance/canary/{deployment.pk}/promote/", follow=True)
    assert "requires the Business plan" in response.content.decode()
    operator_client.post(f"/governance/canary/{deployment.pk}/rollback/", {"reason": "license"})
    deployment.refresh_from_db()
    assert deployment.phase == Phase.ROLLBACK


def test_pause_resume_and_approve_buttons_follow_the_state(fleet, operator_user, operator_client):
    deployment = start(operator_user, steps=[{"percentage": 33, "approval": True}, {"percentage": 100}])
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    assert ">Pause<" in html and ">Resume<" not in html and "Approve next step" not in html
    operator_client.post(f"/governance/canary/{deployment.pk}/pause/", {"reason": "lunch"})
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    assert ">Resume<" in html and ">Pause<" not in html and 'id="canary-paused"' in html and "lunch" in html
    operator_client.post(f"/governance/canary/{deployment.pk}/resume/")
    from canary.services import canary_advance

    agent_finishes(canary_runs(deployment))
    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    assert "Approve next step" in html and 'id="canary-awaiting"' in html
    operator_client.post(f"/governance/canary/{deployment.pk}/pause/")
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    assert "Approve next step" not in html and "Resume it to approve the next step." in html  # why no button
    operator_client.post(f"/governance/canary/{deployment.pk}/resume/")
    response = operator_client.post(f"/governance/canary/{deployment.pk}/approve/", follow=True)
    assert "the next step was approved" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.phase == Phase.ROLLOUT


def test_a_paused_deployment_says_what_pausing_holds_and_that_its_clock_is_stopped(fleet, operator_user, viewer_client):
    from canary.services import canary_pause

    deployment = start(operator_user, percentage=33)
    before = viewer_client.get(deployment.get_absolute_url()).content.decode()
    assert "Step deadline" in before and 'id="canary-paused"' not in before
    canary_pause(actor=operator_user, deployment=deployment, reason="lunch")
    html = viewer_client.get(deployment.get_absolute_url() + "?partial=live", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="canary-paused"' in html
    note = html.split('id="canary-paused-note">')[1].split("</div>")[0]
    assert note.startswith("lunch · no further instance gets the change") and "health is still watched" in note
    assert "the step's clock is stopped" in html and "Step deadline" not in html  # the deadline shown would be wrong


def test_viewers_get_no_approve_pause_or_resume_buttons_and_cannot_post_them(fleet, operator_user, viewer_client):
    from canary.services import canary_pause

    deployment = start(operator_user, steps=[{"percentage": 33, "approval": True}, {"percentage": 100}])
    html = viewer_client.get(deployment.get_absolute_url()).content.decode()
    assert ">Pause<" not in html and "Approve next step" not in html
    canary_pause(actor=operator_user, deployment=deployment)
    assert ">Resume<" not in viewer_client.get(deployment.get_absolute_url()).content.decode()
    for action in ("approve", "pause", "resume"):
        assert_status(viewer_client.post(f"/governance/canary/{deployment.pk}/{action}/"), 403)
    deployment.refresh_from_db()
    assert deployment.paused


def test_after_a_rollback_the_latest_share_is_the_rollback_check_and_says_so(fleet, operator_user, operator_client):
    from canary.services import canary_advance, canary_rollback

    deployment = start(operator_user, percentage=33)
    agent_finishes(canary_runs(deployment))
    canary_advance(deployment_id=deployment.pk)
    canary_rollback(actor=operator_user, deployment=deployment, reason="checking")
    agent_finishes(list(CommandRun.objects.filter(command__in=deployment.targets.values("revert_command"))))
    canary_advance(deployment_id=deployment.pk)
    deployment.refresh_from_db()
    assert deployment.phase == Phase.ROLLED_BACK, deployment.rollback_note
    html = operator_client.get(deployment.get_absolute_url()).content.decode()
    assert "Healthy (latest round, after the rollback)" in html
    assert html.split('id="healthy-latest">')[1].startswith("100.0 %")  # every poll healthy: not 0.0 %


def test_the_command_queue_says_which_instances_the_canary_ran_on(fleet, operator_user, viewer_client):
    deployment = start(operator_user, percentage=33)
    html = viewer_client.get("/operations/").content.decode()
    row = html.split(f'href="/operations/{deployment.canary_command_id}/"')[1].split("</tr>")[0]
    assert "Instances: web-1" in row and "All instances" not in row


def test_the_poll_history_refreshes_itself_while_running_on_its_newest_page_only(fleet, operator_user, viewer_client):
    from canary.services import canary_advance

    deployment = start(operator_user, percentage=66, consecutive_healthy=3)
    agent_finishes(canary_runs(deployment))
    canary_advance(deployment_id=deployment.pk)
    canary_advance(deployment_id=deployment.pk)
    url = f"/governance/canary/{deployment.pk}/polls/"
    newest = viewer_client.get(url, {"healthy": "true"}, HTTP_HX_REQUEST="true").content.decode()
    form = newest.split("<form")[1].split(">")[0]
    assert 'hx-trigger="submit, every 10s"' in form  # the form re-sends its own filters
    from canary.models import HealthPoll

    row = HealthPoll.objects.filter(deployment=deployment).values().first()
    row.pop("id")
    HealthPoll.objects.bulk_create([HealthPoll(**row) for _ in range(60)])  # more than one page of 50
    older = viewer_client.get(url, {"page": 2}, HTTP_HX_REQUEST="true").content.decode()
    assert 'aria-label="Poll pages"' in older and "every 10s" not in older  # a page being read stays put
    CanaryDeployment.objects.filter(pk=deployment.pk).update(phase=Phase.SUCCEEDED)
    assert "every 10s" not in viewer_client.get(url, HTTP_HX_REQUEST="true").content.decode()  # ended: it stops
