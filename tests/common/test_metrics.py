from rest_framework.authtoken.models import Token

from fleet.models import Instance


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
    token = Token.objects.create(user=viewer_user)
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token.key}")
    assert response.status_code == 200
    assert "fleet_command_queue_depth" in response.content.decode()
