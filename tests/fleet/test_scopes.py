"""One scope resolution everywhere: the database query and the in-memory match always agree."""

import pytest

from fleet.choices import ScopeKind
from fleet.scopes import Scope, ScopeError, parse_tag_filter
from fleet.selectors import instance_memberships, instances_in_scope
from fleet.services import scope_from_input

from .helpers import make_group, make_instance


@pytest.fixture
def fleet(db):
    web, db_group = make_group("web"), make_group("db")
    return {
        "web-prod": make_instance("web-prod", groups=[web], tags=["env=production", "role=web"]),
        "web-stage": make_instance("web-stage", groups=[web], tags=["env=staging", "role=web"]),
        "db-prod": make_instance("db-prod", groups=[db_group], tags=["env=production", "role=db"]),
        "both": make_instance("both", groups=[web, db_group], tags=["env=production"]),
        "loner": make_instance("loner"),
        "groups": {"web": web, "db": db_group},
    }


def names(qs):
    return sorted(i.name for i in qs)


def in_memory(scope):
    memberships = instance_memberships()
    from fleet.models import Instance

    ids = {
        pk for pk, (groups, tags) in memberships.items() if scope.matches(instance_id=pk, group_ids=groups, tags=tags)
    }
    return sorted(Instance.objects.filter(pk__in=ids).values_list("name", flat=True))


def test_all_scope_is_the_whole_fleet(fleet):
    scope = Scope(kind=ScopeKind.ALL)
    assert names(instances_in_scope(scope)) == ["both", "db-prod", "loner", "web-prod", "web-stage"]
    assert in_memory(scope) == names(instances_in_scope(scope))


def test_groups_scope_takes_instances_in_any_of_the_groups_once(fleet):
    g = fleet["groups"]
    scope = Scope(kind=ScopeKind.GROUPS, group_ids=(g["web"].pk, g["db"].pk))
    assert names(instances_in_scope(scope)) == ["both", "db-prod", "web-prod", "web-stage"]
    assert in_memory(scope) == names(instances_in_scope(scope))


def test_tag_scope_needs_every_tag(fleet):
    scope = Scope(kind=ScopeKind.TAGS, tags=("env=production", "role=web"))
    assert names(instances_in_scope(scope)) == ["web-prod"]
    assert in_memory(scope) == ["web-prod"]
    single = Scope(kind=ScopeKind.TAGS, tags=("env=production",))
    assert names(instances_in_scope(single)) == ["both", "db-prod", "web-prod"]
    assert in_memory(single) == names(instances_in_scope(single))


def test_tag_value_must_match_exactly(fleet):
    scope = Scope(kind=ScopeKind.TAGS, tags=("env=prod",))
    assert names(instances_in_scope(scope)) == []
    assert in_memory(scope) == []


def test_instances_scope_is_exactly_those_instances(fleet):
    scope = Scope(kind=ScopeKind.INSTANCES, instance_ids=(fleet["loner"].pk, fleet["db-prod"].pk))
    assert names(instances_in_scope(scope)) == ["db-prod", "loner"]
    assert in_memory(scope) == ["db-prod", "loner"]


def test_a_bad_tag_filter_is_refused_with_the_reason():
    with pytest.raises(ScopeError, match="key=value"):
        parse_tag_filter("env production")
    assert parse_tag_filter(" env=production, role=web ,env=production") == ["env=production", "role=web"]


def test_a_group_scope_without_groups_is_refused(db):
    from common.exceptions import ApplicationError

    with pytest.raises(ApplicationError, match="at least one group"):
        scope_from_input(kind=ScopeKind.GROUPS, groups=[])
