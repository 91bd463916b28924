"""One FilterSet per list, used by the HTML view, the API and the selectors alike."""

import django_filters
from django.db.models import Q

from .choices import CommandSource, CommandType, InstanceStatus, RunStatus
from .models import Command, CommandRun, Group, Instance
from .scopes import ScopeError, parse_tag_filter


class InstanceFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Search")
    status = django_filters.ChoiceFilter(choices=InstanceStatus.choices, empty_label="Any")
    group = django_filters.ModelChoiceFilter(
        queryset=Group.objects.all(), field_name="groups", label="Group", empty_label="Any"
    )
    tag = django_filters.CharFilter(method="filter_tag", label="Tag (key=value)")
    os_version = django_filters.CharFilter(lookup_expr="iexact", label="OS version")

    class Meta:
        model = Instance
        fields = ["q", "status", "group", "tag", "os_version"]

    def filter_q(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(hostname__icontains=value) | Q(address__icontains=value))

    def filter_tag(self, queryset, name, value):
        try:
            tags = parse_tag_filter(value)
        except ScopeError:
            return queryset.none()
        for tag in tags:
            key, val = tag.split("=", 1)
            queryset = queryset.filter(tags__key=key, tags__value=val)
        return queryset.distinct() if tags else queryset


class CommandFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=CommandType.choices, label="Type", empty_label="Any")
    source = django_filters.ChoiceFilter(choices=CommandSource.choices, empty_label="Any")
    instance = django_filters.ModelChoiceFilter(
        queryset=Instance.objects.all(), field_name="runs__instance", distinct=True, label="Server", empty_label="Any"
    )

    class Meta:
        model = Command
        fields = ["kind", "source", "instance"]


class CommandRunFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    instance = django_filters.ModelChoiceFilter(queryset=Instance.objects.all())
    # Bounded: an id beyond 64 bits would overflow the database's integer on the way in.
    command = django_filters.NumberFilter(field_name="command_id", min_value=1, max_value=2**63 - 1)

    class Meta:
        model = CommandRun
        fields = ["status", "instance", "command"]
