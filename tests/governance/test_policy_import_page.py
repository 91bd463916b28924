"""The Import page and the Export buttons: upload or paste, the dry run's diff, Apply; admins only."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from governance.models import Policy
from tests.governance.conftest import make_policy

pytestmark = pytest.mark.django_db

URL = reverse("governance:policy_import")
TEXT = (
    "name: Need agent\ntype: required_apps\nrules:\n  apps:\n    - name: monitoring-agent\n      min_version: '2.0'\n"
)


def test_pasted_yaml_shows_the_diff_and_apply_applies_it(admin_client):
    make_policy(name="Need agent")
    preview = admin_client.post(URL, {"text": TEXT, "action": "preview"})
    html = preview.content.decode()
    assert preview.status_code == 200 and 'id="import-diff"' in html and "rules" in html and 'id="import-apply"' in html
    assert Policy.objects.get().rules["apps"][0]["min_version"] is None  # a preview changes nothing

    applied = admin_client.post(URL, {"text": TEXT, "action": "apply"})
    assert applied.status_code == 302
    assert Policy.objects.get().rules["apps"][0]["min_version"] == "2.0"
    assert Policy.objects.get().versions.order_by("-number").first().source == "import"


def test_an_uploaded_zip_is_carried_to_apply_and_errors_name_file_and_line(admin_client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("policies/agent.yaml", TEXT)
        archive.writestr("policies/bad.yaml", TEXT.replace("Need agent", "Bad").replace("'2.0'", "'x y'"))
    upload = SimpleUploadedFile("p.zip", buffer.getvalue(), content_type="application/zip")
    response = admin_client.post(URL, {"upload": upload, "action": "preview"})
    html = response.content.decode()
    assert response.status_code == 400 and "policies/bad.yaml</span>, line 6" in html
    assert not Policy.objects.exists()

    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("policies/agent.yaml", TEXT)
    upload = SimpleUploadedFile("p.zip", good.getvalue(), content_type="application/zip")
    preview = admin_client.post(URL, {"upload": upload, "action": "preview"})
    carried = preview.context["form"].initial["zip_base64"]
    assert carried and "created" in preview.content.decode()
    assert admin_client.post(URL, {"zip_base64": carried, "action": "apply"}).status_code == 302
    assert Policy.objects.get().name == "Need agent"


def test_the_import_page_is_for_admins_and_the_list_offers_export(operator_client, viewer_client):
    assert operator_client.get(URL).status_code == 403
    assert viewer_client.post(URL, {"text": TEXT}).status_code == 403
    page = viewer_client.get(reverse("governance:policy_list")).content.decode()
    assert 'href="/api/governance/policies/export"' in page and "Import</a>" not in page
    assert viewer_client.get("/api/governance/policies/export").status_code == 200  # the session is enough
    assert not Policy.objects.exists()


@pytest.mark.parametrize("carried", ["\u00e9t\u00e9", "\ufffd\ufffd", "not base64!"])
def test_a_carried_zip_that_is_not_base64_is_a_message_not_a_500(admin_client, admin_api, carried):
    """Issue #11, found by hand: non-ASCII in zip_base64 raised ValueError, not binascii.Error (a 500)."""
    said = "zip_base64 is not base64, so the zip cannot be read: send (or upload) the zip again."
    response = admin_client.post(URL, {"zip_base64": carried, "action": "apply"})
    assert response.status_code == 400 and said in response.content.decode()  # the page and the API say the same
    api = admin_api.post("/api/governance/policies/import", {"zip_base64": carried}, format="json")
    assert api.status_code == 400 and api.json()["errors"] == {"zip_base64": [said]}
    assert api.json()["message"] == said
    assert not Policy.objects.exists()
