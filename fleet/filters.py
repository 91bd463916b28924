"""One FilterSet per list, used by the HTML view, the API and the selectors alike."""

import django_filters
from django.db.models import Q
from django.urls import reverse_lazy

from common.filters import AutocompleteInput, FilterSet
from common.validators import parse_id

from .choices import CommandSource, CommandType, InstanceStatus, RunStatus
from .models import Command, CommandRun, Group, Instance
from .scopes import ScopeError, parse_tag_filter


class InstanceFilter(django_filters.CharFilter):
    """An instance by name (case-insensitive) or by id, through `field_name` (the relation to Instance);
    the box suggests names as the person types. Ids keep working for API clients and links."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("field_name", "instance")
        kwargs.setdefault("label", "Instance")
        kwargs.setdefault("max_length", 200)
        kwargs.setdefault("widget", AutocompleteInput(reverse_lazy("fleet:server_names")))
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        value = (value or "").strip()
        if not value:
            return qs
        match = Q(**{f"{self.field_name}__name__iexact": value})
        if pk := parse_id(value):
            match |= Q(**{f"{self.field_name}__pk": pk})
        qs = qs.filter(match)
        return qs.distinct() if "__" in self.field_name else qs


class InstanceFilterSet(FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Search")
    status = django_filters.ChoiceFilter(choices=InstanceStatus.choices)
    group = django_filters.ModelChoiceFilter(queryset=Group.objects.all(), field_name="groups", label="Group")
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


class CommandFilterSet(FilterSet):
    kind = django_filters.ChoiceFilter(choices=CommandType.choices, label="Type")
    source = django_filters.ChoiceFilter(choices=CommandSource.choices)
    instance = InstanceFilter(field_name="runs__instance", label="Server")

    class Meta:
        model = Command
        fields = ["kind", "source", "instance"]


class CommandRunFilterSet(FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    instance = django_filters.ModelChoiceFilter(queryset=Instance.objects.all())
    # Bounded: an id beyond 64 bits would overflow the database's integer on the way in.
    command = django_filters.NumberFilter(field_name="command_id", min_value=1, max_value=2**63 - 1)

    class Meta:
        model = CommandRun
        fields = ["status", "instance", "command"]
