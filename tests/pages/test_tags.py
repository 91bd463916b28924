"""The Tags page: every tag with its servers and what selects by it; operators manage, viewers read."""

from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from fleet import services
from fleet.models import Instance, RegistrationToken, Tag
from fleet.scopes import Scope
from governance import services as governance
from tests.base import assert_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def tagged():
    for name, tags in (("web-01", ["env=prod", "role=web"]), ("web-02", ["env=prod"]), ("db-01", ["env=stage"])):
        instance = Instance.objects.create(name=name, last_seen_at=timezone.now())
        instance.tags.set(services.tags_get_or_create(tags))
    policy = governance.policy_create(
        actor=None,
        name="Prod agent",
        policy_type="required_apps",
        rules={"apps": [{"name": "monitoring-agent"}]},
        scope=Scope(kind="tags", tags=("env=prod",)),
    )
    return policy


def test_the_tags_page_lists_counts_and_what_selects_each_tag(viewer_client, tagged):
    response = viewer_client.get(reverse("fleet:tag_list"))
    assert_status(response, 200)
    tags = {str(t): t for t in response.context["tags"]}
    assert tags["env=prod"].server_count == 2 and tags["env=stage"].server_count == 1
    assert [u["name"] for u in tags["env=prod"].selected_by] == ["Prod agent"]
    html = response.content.decode()
    assert f'href="{reverse("fleet:server_list")}?tag=env%3Dprod"' in html  # chips and counts filter the servers
    assert "New tag" not in html and "Rename" not in html  # viewers read only


def test_tags_sort_by_server_count_from_the_column_header(viewer_client, tagged):
    response = viewer_client.get(reverse("fleet:tag_list"), {"sort": "-servers"})
    assert [str(t) for t in response.context["tags"]][0] == "env=prod"
    assert 'aria-sort="descending"' in response.content.decode()
    ignored = viewer_client.get(reverse("fleet:tag_list"), {"sort": "instances__name"})  # not allowlisted
    assert [str(t) for t in ignored.context["tags"]] == ["env=prod", "env=stage", "role=web"]


def test_viewers_cannot_create_rename_or_delete_tags(viewer_client, tagged):
    tag = Tag.objects.get(key="role")
    assert viewer_client.post(reverse("fleet:tag_create"), {"tag": "a=b"}).status_code == 403
    assert viewer_client.post(reverse("fleet:tag_edit", args=[tag.pk]), {"tag": "a=b"}).status_code == 403
    assert viewer_client.post(reverse("fleet:tag_delete", args=[tag.pk])).status_code == 403
    assert Tag.objects.filter(key="role").exists() and not Tag.objects.filter(key="a").exists()


def test_an_operator_renames_a_tag_and_the_scopes_and_tokens_that_name_it_follow(operator_client, tagged):
    token, _ = services.registration_token_create(actor=None, name="prod", tags=["env=prod"])
    tag = Tag.objects.get(key="env", value="prod")
    response = operator_client.post(reverse("fleet:tag_edit", args=[tag.pk]), {"tag": "env=production"})
    assert_status(response, 302)
    tagged.refresh_from_db()
    assert tagged.scope_tags == ["env=production"]
    assert RegistrationToken.objects.get(pk=token.pk).tags == ["env=production"]
    assert sorted(Instance.objects.filter(tags__value="production").values_list("name", flat=True)) == [
        "web-01",
        "web-02",
    ]


def test_renaming_onto_an_existing_tag_or_bad_syntax_shows_on_the_field(operator_client, tagged):
    tag = Tag.objects.get(key="env", value="prod")
    for bad, words in (("env=stage", "already exists"), ("no equals sign", "is not a tag")):
        response = operator_client.post(reverse("fleet:tag_edit", args=[tag.pk]), {"tag": bad})
        assert_status(response, 200)
        assert words in response.context["form"].errors["tag"][0]


def test_a_tag_a_policy_selects_by_cannot_be_deleted_an_unused_one_can(operator_client, tagged):
    used = Tag.objects.get(key="env", value="prod")
    response = operator_client.post(reverse("fleet:tag_delete", args=[used.pk]), follow=True)
    assert "still used to select servers by policy 'Prod agent'" in unescape(response.content.decode())
    assert Tag.objects.filter(pk=used.pk).exists()
    unused = Tag.objects.get(key="role")
    operator_client.post(reverse("fleet:tag_delete", args=[unused.pk]))
    assert not Tag.objects.filter(pk=unused.pk).exists()
    assert Instance.objects.get(name="web-01").tags.count() == 1


def test_an_operator_creates_a_tag(operator_client):
    response = operator_client.post(reverse("fleet:tag_create"), {"tag": "team=payments"})
    assert_status(response, 302)
    assert Tag.objects.filter(key="team", value="payments").exists()


def test_the_servers_list_has_a_compliance_column_and_sorts_by_it(viewer_client, tagged):
    governance.evaluate_fleet()
    response = viewer_client.get(reverse("fleet:server_list"), {"sort": "compliance"})
    assert_status(response, 200)
    html = response.content.decode()
    assert "Compliance" in html and "badge-status-critical" in html  # prod servers lack the agent: 0 %
    names = [i.name for i in response.context["instances"]]
    assert names[-1] == "db-01"  # not in the policy's scope: no score, last
    chip = f'href="{reverse("fleet:server_list")}?tag=role%3Dweb"'
    assert chip in html
    filtered = viewer_client.get(reverse("fleet:server_list"), {"tag": "role=web"})
    assert [i.name for i in filtered.context["instances"]] == ["web-01"]
