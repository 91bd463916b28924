"""Fleet pages: dashboard, servers, groups, registration tokens, license, audit log."""

import html
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from common.models import AuditEntry
from fleet import services
from fleet.choices import InstanceStatus
from fleet.models import Group, Instance, License, RegistrationToken, TokenUse
from tests.base import assert_status

pytestmark = pytest.mark.django_db


def text(response) -> str:
    """The page as a person reads it (entities such as &#x27; decoded)."""
    return html.unescape(response.content.decode())


def make_instance(name, *, status=InstanceStatus.ONLINE, groups=(), tags=(), os_version="24.04", **fields):
    instance = Instance.objects.create(
        name=name,
        hostname=f"{name}.example",
        status=status,
        os_version=os_version,
        last_seen_at=timezone.now() if status != InstanceStatus.PENDING else None,
        **fields,
    )
    instance.groups.set(groups)
    instance.tags.set(services.tags_get_or_create(list(tags)))
    return instance


@pytest.fixture
def fleet(admin_user):
    web = services.group_create(actor=admin_user, name="web")
    db = services.group_create(actor=admin_user, name="databases")
    web1 = make_instance(
        "web-01",
        groups=[web],
        tags=["env=production"],
        apps=[
            {"name": "nginx", "version": "1.24", "running": True},
            {"name": "monitoring-agent", "version": "2.0", "running": False},
        ],
        settings={"ssh.password_auth": False, "ntp.server": "pool.ntp.org"},
        updates=[{"kind": "os", "name": "os", "version": "24.10", "released_at": "2026-10-01T08:00:00+00:00"}],
    )
    web2 = make_instance(
        "web-02", groups=[web], tags=["env=staging"], status=InstanceStatus.OFFLINE, os_version="22.04"
    )
    db1 = make_instance("db-01", groups=[db], tags=["env=production", "role=db"])
    pending = make_instance("new-01", status=InstanceStatus.PENDING, os_version="")
    token, _ = services.registration_token_create(actor=admin_user, name="rollout")
    return {"web": web, "db": db, "web1": web1, "web2": web2, "db1": db1, "pending": pending, "token": token}


def page_urls(fleet):
    return [
        reverse("fleet:dashboard"),
        reverse("fleet:server_list"),
        reverse("fleet:server_detail", args=[fleet["web1"].pk]),
        reverse("fleet:group_list"),
        reverse("fleet:group_detail", args=[fleet["web"].pk]),
        reverse("fleet:token_list"),
        reverse("fleet:token_detail", args=[fleet["token"].pk]),
        reverse("fleet:command_list"),
        reverse("fleet:license"),
        reverse("common:audit_list"),
    ]


# --- Access ------------------------------------------------------------------------------------


def test_every_fleet_page_renders_for_a_viewer(viewer_client, fleet):
    for url in page_urls(fleet):
        response = viewer_client.get(url)
        assert_status(response, 200)
        assert b"Fleet Control Panel" in response.content, url


def test_anonymous_visitors_are_sent_to_the_login_page(client, fleet):
    for url in page_urls(fleet):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_a_viewer_sees_no_write_buttons(viewer_client, fleet):
    pages = {
        reverse("fleet:server_detail", args=[fleet["web1"].pk]): ["Edit groups and tags", "Send command", "/delete/"],
        reverse("fleet:group_list"): ["New group", "/delete/"],
        reverse("fleet:token_list"): ["New token", "Revoke"],
        reverse("fleet:dashboard"): ["New command", "Add servers"],
        reverse("fleet:license"): ["Install license"],
    }
    for url, absent in pages.items():
        body = viewer_client.get(url).content.decode()
        for text in absent:
            assert text not in body, f"{text!r} shown to a viewer on {url}"


def test_an_admin_sees_the_write_buttons(admin_client, fleet):
    body = admin_client.get(reverse("fleet:server_detail", args=[fleet["web1"].pk])).content.decode()
    assert "Edit groups and tags" in body and "Send command" in body
    assert "New group" in admin_client.get(reverse("fleet:group_list")).content.decode()


@pytest.mark.parametrize(
    "name,needs_pk",
    [
        ("fleet:group_create", False),
        ("fleet:group_edit", "web"),
        ("fleet:group_delete", "web"),
        ("fleet:server_edit", "web1"),
        ("fleet:server_delete", "web1"),
        ("fleet:token_create", False),
        ("fleet:token_revoke", "token"),
        ("fleet:license", False),
    ],
)
def test_admin_actions_are_refused_to_viewers_and_operators(client, viewer_user, operator_user, fleet, name, needs_pk):
    url = reverse(name, args=[fleet[needs_pk].pk]) if needs_pk else reverse(name)
    audit_before = AuditEntry.objects.count()
    for user in (viewer_user, operator_user):
        client.force_login(user)
        assert client.post(url, {"name": "x", "text": "x"}).status_code == 403
        if name != "fleet:license":  # the license page itself is readable by everyone
            assert client.get(url).status_code == 403
    assert AuditEntry.objects.count() == audit_before


def test_posts_without_a_csrf_token_are_refused(admin_user, fleet):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(reverse("fleet:group_create"), {"name": "sneaky"})
    assert response.status_code == 403
    assert not Group.objects.filter(name="sneaky").exists()


# --- Dashboard ---------------------------------------------------------------------------------


def test_dashboard_shows_counts_charts_and_recently_offline(viewer_client, fleet):
    response = viewer_client.get(reverse("fleet:dashboard"))
    assert response.context["summary"]["online"] == 2
    assert response.context["summary"]["offline"] == 1
    assert response.context["summary"]["pending"] == 1
    body = response.content.decode()
    assert 'data-chart="chart-status"' in body and 'id="chart-status"' in body
    assert 'data-chart="chart-os"' in body
    assert [i.name for i in response.context["recently_offline"]] == ["web-02"]
    # The short server list puts the ones needing attention first: offline, then never seen.
    assert [i.name for i in response.context["servers"]] == ["web-02", "new-01", "db-01", "web-01"]
    assert "<script>" not in body  # CSP: no inline scripts, only JSON data blocks


def test_dashboard_live_refresh_returns_only_the_live_part(viewer_client, fleet):
    response = viewer_client.get(reverse("fleet:dashboard"), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith("{#") is False
    assert 'id="dashboard-live"' in body
    assert "<nav" not in body and "<html" not in body
    assert "HX-Request" in response["Vary"]


def test_dashboard_loads_panels_of_installed_apps_and_skips_unknown_ones(viewer_client, fleet, settings):
    settings.FLEET_DASHBOARD_PANELS = ["nosuchapp:panel", "governance:fleet_compliance_panel"]
    response = viewer_client.get(reverse("fleet:dashboard"))
    assert response.context["panels"] == [reverse("governance:fleet_compliance_panel")]
    assert f'hx-get="{reverse("governance:fleet_compliance_panel")}"' in response.content.decode()


def test_a_page_fetched_by_htmx_renders_without_the_page_shell(viewer_client, fleet):
    # Panels other apps add are ordinary pages; fetched by htmx they must not bring a second sidebar.
    response = viewer_client.get(reverse("fleet:group_list"), HTTP_HX_REQUEST="true")
    assert_status(response, 200)
    assert b"<html" not in response.content and b"sidebar" not in response.content
    assert b"databases" in response.content


def test_an_empty_fleet_shows_how_to_add_servers(viewer_client):
    body = viewer_client.get(reverse("fleet:dashboard")).content.decode()
    assert "No servers yet" in body


def test_dashboard_queries_do_not_grow_with_the_fleet(viewer_client, admin_user):
    groups = [services.group_create(actor=admin_user, name=f"g{i}") for i in range(3)]

    def grow(n):
        start = Instance.objects.count()
        for i in range(start, start + n):
            make_instance(
                f"srv-{i:03}", groups=groups[: i % 3 + 1], tags=[f"env=e{i % 4}", "role=web"], os_version=f"2{i % 5}.04"
            )
        services.command_create(
            actor=admin_user, kind="restart_app", params={"app": "nginx"}, scope=services.scope_from_input(kind="all")
        )

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert viewer_client.get(reverse("fleet:dashboard")).status_code == 200
        return len(ctx)

    grow(5)
    small = count()
    grow(45)
    assert count() == small


# --- Servers -----------------------------------------------------------------------------------


def test_server_list_filters_by_status_group_tag_search_and_os(viewer_client, fleet):
    def names(**params):
        response = viewer_client.get(reverse("fleet:server_list"), params)
        return sorted(i.name for i in response.context["instances"])

    assert names() == ["db-01", "new-01", "web-01", "web-02"]
    assert names(status="offline") == ["web-02"]
    assert names(group=fleet["web"].pk) == ["web-01", "web-02"]
    assert names(tag="env=production") == ["db-01", "web-01"]
    assert names(tag="env=production, role=db") == ["db-01"]
    assert names(q="web") == ["web-01", "web-02"]
    assert names(os_version="22.04") == ["web-02"]


def test_server_list_shows_badges_groups_tags_and_last_seen(viewer_client, fleet):
    body = viewer_client.get(reverse("fleet:server_list")).content.decode()
    assert "badge-status-offline" in body and "badge-status-online" in body
    assert "env=production" in body and ">web</a>" in body
    assert "never" in body  # the pending server has no heartbeat yet


def test_server_list_live_refresh_returns_only_the_table_body_with_the_filters(viewer_client, fleet):
    response = viewer_client.get(reverse("fleet:server_list") + "?status=online", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.startswith("<tbody") and "<html" not in body
    assert 'hx-get="/servers/?status=online"' in body
    assert "web-01" in body and "web-02" not in body


def test_server_list_paginates(viewer_client, db):
    for i in range(30):
        make_instance(f"srv-{i:02}")
    first = viewer_client.get(reverse("fleet:server_list"))
    assert len(first.context["instances"]) == 25
    assert "Page 1 of 2" in first.content.decode()
    assert len(viewer_client.get(reverse("fleet:server_list"), {"page": 2}).context["instances"]) == 5


def test_server_list_queries_do_not_grow_with_the_fleet(viewer_client, admin_user):
    groups = [services.group_create(actor=admin_user, name=f"g{i}") for i in range(3)]

    def grow(n):
        start = Instance.objects.count()
        for i in range(start, start + n):
            make_instance(f"srv-{i:03}", groups=groups[: i % 3 + 1], tags=[f"env=e{i % 4}", "role=web"])

    def count():
        with CaptureQueriesContext(connection) as ctx:
            response = viewer_client.get(reverse("fleet:server_list"))
        assert len(response.context["instances"]) == min(Instance.objects.count(), 25)
        return len(ctx)

    grow(5)
    small = count()
    grow(45)
    assert count() == small


def test_server_detail_shows_state_apps_settings_updates_and_runs(viewer_client, fleet, admin_user):
    web1 = fleet["web1"]
    services.command_create(
        actor=admin_user,
        kind="stop_app",
        params={"app": "nginx"},
        scope=services.scope_from_input(kind="instances", instances=[web1]),
    )
    body = viewer_client.get(reverse("fleet:server_detail", args=[web1.pk])).content.decode()
    for text in (
        "24.04",
        "nginx",
        "1.24",
        "running",
        "stopped",
        "ssh.password_auth",
        "false",
        "24.10",
        "2026-10-01 08:00",
        "stop_app nginx",
    ):
        assert text in body, text
    assert f'hx-get="{reverse("governance:server_panel", args=[web1.pk])}"' in body


def test_server_detail_live_status_returns_the_badge_only(viewer_client, fleet):
    response = viewer_client.get(reverse("fleet:server_detail", args=[fleet["web2"].pk]), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert 'id="server-status"' in body and "badge-status-offline" in body and "<html" not in body


def test_an_unknown_server_is_a_404_page(viewer_client, db):
    response = viewer_client.get(reverse("fleet:server_detail", args=[999]))
    assert response.status_code == 404
    assert b"does not exist" in response.content


def test_admin_changes_a_servers_groups_and_tags_through_the_service(admin_client, fleet):
    web1 = fleet["web1"]
    url = reverse("fleet:server_edit", args=[web1.pk])
    assert admin_client.get(url).context["form"].initial["tags"] == "env=production"
    response = admin_client.post(
        url, {"address": "10.0.0.5:8080", "groups": [fleet["db"].pk], "tags": "env=staging, role=db"}
    )
    assert response.status_code == 302
    web1.refresh_from_db()
    assert [g.name for g in web1.groups.all()] == ["databases"]
    assert sorted(str(t) for t in web1.tags.all()) == ["env=staging", "role=db"]
    assert web1.address == "10.0.0.5:8080"
    entry = AuditEntry.objects.get(action="instance.update")
    assert entry.actor_label == "alice" and entry.details["groups"] == [["web"], ["databases"]]
    follow = admin_client.get(response["Location"])
    assert "web-01 updated." in follow.content.decode()


def test_a_malformed_tag_is_explained_and_nothing_changes(admin_client, fleet):
    web1 = fleet["web1"]
    response = admin_client.post(reverse("fleet:server_edit", args=[web1.pk]), {"groups": [], "tags": "production"})
    assert response.status_code == 200
    assert "'production' is not a tag: write key=value" in text(response)
    assert [g.name for g in web1.groups.all()] == ["web"]


def test_admin_deletes_a_server_after_confirming(admin_client, fleet):
    url = reverse("fleet:server_delete", args=[fleet["web2"].pk])
    confirm = admin_client.get(url)
    assert "Delete web-02 from the fleet?" in confirm.content.decode()
    assert Instance.objects.filter(name="web-02").exists()
    response = admin_client.post(url)
    assert response["Location"] == reverse("fleet:server_list")
    assert not Instance.objects.filter(name="web-02").exists()
    assert AuditEntry.objects.filter(action="instance.delete", object_repr="web-02").exists()


# --- Groups ------------------------------------------------------------------------------------


def test_group_list_counts_members(viewer_client, fleet):
    groups = {g.name: g.instance_count for g in viewer_client.get(reverse("fleet:group_list")).context["groups"]}
    assert groups == {"databases": 1, "web": 2}


def test_group_detail_lists_its_members(viewer_client, fleet):
    response = viewer_client.get(reverse("fleet:group_detail", args=[fleet["web"].pk]))
    assert [i.name for i in response.context["instances"]] == ["web-01", "web-02"]


def test_admin_creates_edits_and_deletes_a_group(admin_client, fleet):
    response = admin_client.post(reverse("fleet:group_create"), {"name": "edge", "description": "CDN nodes"})
    group = Group.objects.get(name="edge")
    assert response["Location"] == group.get_absolute_url()
    admin_client.post(reverse("fleet:group_edit", args=[group.pk]), {"name": "edge-eu", "description": ""})
    group.refresh_from_db()
    assert group.name == "edge-eu"
    admin_client.post(reverse("fleet:group_delete", args=[group.pk]))
    assert not Group.objects.filter(pk=group.pk).exists()
    actions = list(
        AuditEntry.objects.filter(object_type="fleet.group", object_id=str(group.pk)).values_list("action", flat=True)
    )
    assert sorted(actions) == ["group.create", "group.delete", "group.update"]


def test_a_duplicate_group_name_is_a_form_error_not_a_crash(admin_client, fleet):
    response = admin_client.post(reverse("fleet:group_create"), {"name": "web"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert Group.objects.filter(name="web").count() == 1


def test_an_empty_group_list_explains_groups(viewer_client):
    assert "No groups yet" in viewer_client.get(reverse("fleet:group_list")).content.decode()


# --- Registration tokens -----------------------------------------------------------------------


def test_the_token_plaintext_is_shown_once_and_never_again(admin_client, fleet):
    response = admin_client.post(
        reverse("fleet:token_create"),
        {
            "name": "web batch",
            "usage": "multi_use",
            "max_uses": "5",
            "groups": [fleet["web"].pk],
            "tags": "env=production",
        },
    )
    assert_status(response, 200)
    plaintext = response.context["plaintext"]
    assert plaintext.startswith("reg_")
    body = response.content.decode()
    assert plaintext in body and "/api/agent/register" in body and "shown only once" in body
    assert response["Cache-Control"] == "no-store"
    token = RegistrationToken.objects.get(name="web batch")
    assert token.max_uses == 5 and token.tags == ["env=production"] and [g.name for g in token.groups.all()] == ["web"]
    secret = plaintext.split("_", 2)[2]
    assert secret not in token.secret_hash
    for url in (reverse("fleet:token_list"), token.get_absolute_url()):
        assert secret not in admin_client.get(url).content.decode()
    assert AuditEntry.objects.filter(action="registration_token.create", object_id=str(token.pk)).exists()
    # The token really registers an agent, which gets the token's groups and tags.
    instance, _ = services.agent_register(token=plaintext, name="web-09")
    assert [g.name for g in instance.groups.all()] == ["web"]


def test_a_one_time_token_allows_one_registration(admin_client, fleet):
    admin_client.post(reverse("fleet:token_create"), {"name": "single", "usage": "one_time"})
    assert RegistrationToken.objects.get(name="single").max_uses == 1


def test_token_form_errors_are_in_words(admin_client, fleet):
    response = admin_client.post(reverse("fleet:token_create"), {"name": "x", "usage": "one_time", "max_uses": "3"})
    assert "A one-time token is used once" in response.content.decode()
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = admin_client.post(reverse("fleet:token_create"), {"name": "y", "usage": "multi_use", "expires_at": past})
    assert "The expiry date must be in the future." in response.content.decode()
    response = admin_client.post(reverse("fleet:token_create"), {"name": "z", "usage": "multi_use", "tags": "prod"})
    assert "is not a tag" in response.content.decode()
    assert not RegistrationToken.objects.filter(name__in=["x", "y", "z"]).exists()


def test_token_list_shows_each_tokens_state(viewer_client, admin_user, fleet):
    services.registration_token_revoke(
        actor=admin_user, token=services.registration_token_create(actor=admin_user, name="old")[0]
    )
    expired, _ = services.registration_token_create(
        actor=admin_user, name="late", expires_at=timezone.now() + timedelta(seconds=1)
    )
    RegistrationToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    used, text = services.registration_token_create(actor=admin_user, name="used", max_uses=1)
    services.agent_register(token=text, name="srv-x")
    states = {t.name: t.status for t in viewer_client.get(reverse("fleet:token_list")).context["tokens"]}
    assert states == {"rollout": "active", "old": "revoked", "late": "expired", "used": "exhausted"}
    body = viewer_client.get(reverse("fleet:token_list")).content.decode()
    for label in ("Active", "Revoked", "Expired", "Exhausted"):
        assert f">{label}</span>" in body


def test_token_detail_shows_accepted_and_rejected_attempts(viewer_client, admin_user, fleet):
    token, text = services.registration_token_create(actor=admin_user, name="pair", max_uses=1)
    services.agent_register(token=text, name="ok-01", remote_addr="10.1.1.1")
    with pytest.raises(Exception, match="usage limit"):
        services.agent_register(token=text, name="late-01", remote_addr="10.1.1.2")
    assert TokenUse.objects.filter(token=token).count() == 2
    body = viewer_client.get(token.get_absolute_url()).content.decode()
    assert "accepted" in body and "rejected" in body
    assert "ok-01" in body and "10.1.1.2" in body and "reached its usage limit" in body


def test_admin_revokes_a_token_after_confirming(admin_client, fleet):
    token = fleet["token"]
    url = reverse("fleet:token_revoke", args=[token.pk])
    assert "Agents can no longer register" in admin_client.get(url).content.decode()
    response = admin_client.post(url)
    assert response["Location"] == token.get_absolute_url()
    token.refresh_from_db()
    assert token.revoked_at is not None and token.status == "revoked"
    # A second revoke explains itself instead of failing.
    again = admin_client.post(url, follow=True)
    assert "already revoked" in again.content.decode()


def test_an_empty_token_list_says_what_tokens_are_for(viewer_client):
    assert "No registration tokens" in viewer_client.get(reverse("fleet:token_list")).content.decode()


# --- License -----------------------------------------------------------------------------------


def test_license_page_without_a_license_shows_community(viewer_client, license_issuer):
    body = viewer_client.get(reverse("fleet:license")).content.decode()
    assert "Community plan" in body and "No license" in body and "Not in plan" in body


def test_admin_uploads_a_license_and_sees_its_plan_limits_and_features(admin_client, license_issuer):
    text = license_issuer.issue("business", customer="Acme", limits={"max_instances": 50})
    response = admin_client.post(reverse("fleet:license"), {"text": text}, follow=True)
    body = response.content.decode()
    assert "License installed: Business plan for Acme" in body
    assert "Business plan" in body and "Acme" in body and "of 50 allowed" in body
    features = {name: allowed for name, _, allowed in response.context["features"]}
    assert features == {"canary_deployments": True, "gitops": False}
    assert AuditEntry.objects.filter(action="license.upload").count() == 1


def test_a_license_can_be_uploaded_as_a_file(admin_client, license_issuer):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("acme.lic", license_issuer.issue("enterprise").encode())
    admin_client.post(reverse("fleet:license"), {"file": upload})
    assert License.objects.get().plan == "enterprise"


def test_a_tampered_license_is_refused_in_words_and_nothing_is_stored(admin_client, license_issuer):
    body, sig = license_issuer.issue("pro").split(".")
    forged = license_issuer.issue("enterprise").split(".")[0]
    response = admin_client.post(reverse("fleet:license"), {"text": f"{forged}.{sig}"})
    assert response.status_code == 200
    assert "signature does not match" in response.content.decode()
    assert not License.objects.exists()
    response = admin_client.post(reverse("fleet:license"), {"text": ""})
    assert "Paste the license text or choose a license file." in response.content.decode()


def test_a_license_in_grace_is_shown_as_such(viewer_client, install_license):
    install_license("enterprise", expired_days_ago=2)
    body = viewer_client.get(reverse("fleet:license")).content.decode()
    assert "Expired, in grace period" in body


# --- Audit log ---------------------------------------------------------------------------------


def test_audit_log_lists_and_filters_entries_with_details(viewer_client, admin_user, fleet):
    response = viewer_client.get(reverse("common:audit_list"))
    actions = {e.action for e in response.context["entries"]}
    assert {"group.create", "registration_token.create"} <= actions
    filtered = viewer_client.get(reverse("common:audit_list"), {"action": "group."})
    assert {e.action for e in filtered.context["entries"]} == {"group.create"}
    assert (
        "max_uses" in viewer_client.get(reverse("common:audit_list"), {"action": "registration_token"}).content.decode()
    )
    assert (
        "Nothing matches these filters"
        in viewer_client.get(reverse("common:audit_list"), {"actor": "nobody"}).content.decode()
    )
