"""Every list page, empty and filtered down to nothing: it renders, says so in words, and offers to clear
the filters (instead of claiming the fleet is clean)."""

import pytest
from django.urls import reverse

from tests.base import assert_status

pytestmark = pytest.mark.django_db

# url name → a filter that matches nothing (on an empty database anything does; these are real filters).
LISTS = {
    "fleet:server_list": {"q": "no-such-server"},
    "fleet:group_list": None,
    "fleet:tag_list": {"q": "no-such-tag"},
    "fleet:token_list": None,
    "fleet:command_list": {"kind": "restart_app"},
    "governance:policy_list": {"q": "no-such-policy"},
    "governance:violation_list": {"severity": "critical"},
    "governance:exception_list": {"status": "active"},
    "governance:score_list": {"q": "no-such-server"},
    "canary:list": {"phase": "failed"},
    "gitops:list": None,
    "gitops:conflicts": None,
    "common:audit_list": {"action": "nothing."},
    "common:notification_list": {"unread": "1"},
}


@pytest.fixture
def licensed(install_license):
    install_license("enterprise")


@pytest.mark.parametrize("name", LISTS)
def test_every_list_page_has_an_empty_state(admin_client, licensed, name):
    response = admin_client.get(reverse(name))
    assert_status(response, 200)
    assert "empty-state" in response.content.decode(), f"{name} has no empty state"


@pytest.mark.parametrize("name", [n for n, f in LISTS.items() if f])
def test_every_filtered_list_says_nothing_matches_and_offers_to_clear(admin_client, licensed, name):
    response = admin_client.get(reverse(name), LISTS[name])
    assert_status(response, 200)
    html = response.content.decode()
    assert "empty-state" in html, f"{name} filtered to nothing shows no empty state"
    state = html.split('class="empty-state')[1].split("</div>\n</div>")[0]
    assert "Nothing matches these filters" in state, f"{name} does not say that nothing matches"
    assert f'<a href="{reverse(name)}">clear the filters</a>' in state, f"{name} offers no way to clear the filters"


@pytest.mark.parametrize("name", [n for n, f in LISTS.items() if f])
def test_a_filter_with_a_bad_value_shows_the_page_not_an_error(admin_client, licensed, name):
    bad = {key: "\u00e9\ufffd" * 50 for key in LISTS[name]}
    response = admin_client.get(reverse(name), {**bad, "sort": "-nope"})
    assert response.status_code in (200, 400)
