from fleet.models import Instance
from tests.base import api_key_for


def test_metrics_need_authentication(client, db):
    response = client.get("/metrics")
    assert response.status_code == 401


def test_metrics_accept_the_configured_scrape_token(client, db, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    Instance.objects.create(name="a", status="online")
    Instance.objects.create(name="b", status="offline")
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200
    text = response.content.decode()
    assert "fleet_instances 2" in text
    assert 'fleet_instances_by_status{status="online"} 1' in text
    assert 'fleet_instances_by_status{status="offline"} 1' in text


def test_metrics_refuse_a_wrong_token(client, db, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401


def test_metrics_accept_a_user_api_token(client, viewer_user):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {api_key_for(viewer_user)}")
    assert response.status_code == 200
    assert "fleet_command_queue_depth" in response.content.decode()


def test_metrics_cover_violations_compliance_canaries_and_syncs(client, db, settings):
    from django.utils import timezone

    from fleet.scopes import Scope
    from governance import services as governance_services

    settings.METRICS_TOKEN = "scrape-secret"
    Instance.objects.create(name="web-01", status="online", last_seen_at=timezone.now(), apps=[])
    governance_services.policy_create(
        actor=None,
        name="No outdated-db",
        policy_type="required_apps",
        rules={"apps": [{"name": "monitoring-agent"}]},
        scope=Scope(),
        enabled=True,
    )
    governance_services.evaluate_fleet()
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").content.decode()
    assert 'governance_open_violations{severity="warning"} 1' in text
    assert 'governance_open_violations{severity="critical"} 0' in text
    assert "governance_fleet_compliance_score 0.0" in text
    assert 'canary_deployments{phase="evaluation"} 0' in text
    assert 'gitops_sync_runs_total{status="failed"} 0' in text
    assert "gitops_open_conflicts 0" in text


def test_metrics_are_valid_prometheus_exposition_from_a_registry_of_their_own(client, db, settings):
    from prometheus_client import REGISTRY
    from prometheus_client.parser import text_string_to_metric_families

    settings.METRICS_TOKEN = "scrape-secret"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response["Content-Type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "fleet_instances",
        "fleet_instances_by_status",
        "fleet_command_queue_depth",
        "governance_open_violations",
        "governance_fleet_compliance_score",
        "canary_deployments",
        "gitops_sync_runs",
        "gitops_open_conflicts",
    } <= set(families)
    assert families["gitops_sync_runs"].type == "counter"
    assert families["fleet_instances"].type == "gauge"
    # Nothing of ours in the process-global registry: each scrape reads the database afresh.
    assert not any(
        name.startswith(("fleet_", "governance_", "canary_", "gitops_")) for name in REGISTRY._names_to_collectors
    )


def test_metrics_reach_no_session_login_redirect(client, db):
    """/metrics is exempt from the login-required middleware: a scraper gets 401, not a login page."""
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_collector_yielding_anything_but_metric_families_is_named_in_the_error(client, db, settings):
    import pytest

    settings.METRICS_TOKEN = "scrape-secret"
    settings.METRICS_COLLECTORS = [*settings.METRICS_COLLECTORS, "tests.common.test_metrics.legacy_collect"]
    with pytest.raises(TypeError, match="tests.common.test_metrics.legacy_collect yielded"):
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")


def legacy_collect():
    return [("old_style", "a (name, help, type, samples) tuple", "gauge", [({}, 1)])]
