"""One FilterSet per list, used by the HTML views, the API and the selectors alike."""

import django_filters
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from common.filters import FilterSet
from fleet.filters import InstanceFilter
from fleet.models import Group, Instance
from fleet.scopes import ScopeError, parse_tag_filter

from .choices import ExceptionStatus, PolicyType, Severity, ViolationStatus
from .models import InstanceCompliance, Policy, PolicyException, Violation


def filter_instances_by_tags(queryset, value, field="instance"):
    """Keep rows whose instance carries every `key=value` tag in `value` (unknown syntax → nothing)."""
    try:
        tags = parse_tag_filter(value)
    except ScopeError:
        return queryset.none()
    through = Instance.tags.through
    for tag in tags:
        key, val = tag.split("=", 1)
        queryset = queryset.filter(
            Exists(
                through.objects.filter(
                    instance_id=OuterRef(f"{field}_id" if field else "pk"), tag__key=key, tag__value=val
                )
            )
        )
    return queryset


def filter_instances_by_group(queryset, group, field="instance"):
    through = Instance.groups.through
    return queryset.filter(
        Exists(through.objects.filter(instance_id=OuterRef(f"{field}_id" if field else "pk"), group=group))
    )


class InstanceScopedFilterSet(FilterSet):
    """Adds group and tag filters on the row's instance (without joins that multiply rows)."""

    group = django_filters.ModelChoiceFilter(
        queryset=Group.objects.all(), field_name="instance__groups", method="filter_group", label="Group"
    )
    tag = django_filters.CharFilter(method="filter_tag", label="Tag (key=value)")

    def filter_group(self, queryset, name, value):
        return filter_instances_by_group(queryset, value) if value else queryset

    def filter_tag(self, queryset, name, value):
        return filter_instances_by_tags(queryset, value) if value else queryset


class ViolationFilterSet(InstanceScopedFilterSet):
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    status = django_filters.ChoiceFilter(choices=ViolationStatus.choices)
    policy = django_filters.ModelChoiceFilter(queryset=Policy.objects.all())
    instance = InstanceFilter()
    q = django_filters.CharFilter(method="filter_q", label="Search")

    class Meta:
        model = Violation
        fields = ["severity", "status", "policy", "group", "tag", "instance", "q"]

    def filter_q(self, queryset, name, value):
        return queryset.filter(
            Q(evidence__icontains=value) | Q(instance__name__icontains=value) | Q(policy_name__icontains=value)
        )


class PolicyFilterSet(FilterSet):
    policy_type = django_filters.ChoiceFilter(choices=PolicyType.choices, label="Type")
    enabled = django_filters.BooleanFilter(label="Enabled")
    q = django_filters.CharFilter(method="filter_q", label="Search")

    class Meta:
        model = Policy
        fields = ["policy_type", "enabled", "q"]

    def filter_q(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))


class ExceptionFilterSet(FilterSet):
    policy = django_filters.ModelChoiceFilter(queryset=Policy.objects.all())
    status = django_filters.ChoiceFilter(choices=ExceptionStatus.choices, method="filter_status", label="Status")

    class Meta:
        model = PolicyException
        fields = ["policy", "status"]

    def filter_status(self, queryset, name, value):
        now = timezone.now()
        if value == ExceptionStatus.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        if value == ExceptionStatus.EXPIRED:
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)


class InstanceScoreFilterSet(InstanceScopedFilterSet):
    below = django_filters.NumberFilter(field_name="score", lookup_expr="lt", label="Score below")
    q = django_filters.CharFilter(field_name="instance__name", lookup_expr="icontains", label="Search")

    class Meta:
        model = InstanceCompliance
        fields = ["group", "tag", "below", "q"]
