"""FilterSets of common's own lists (the audit log), and filter fields with the shared input rules."""

import django_filters
from django_filters.fields import IsoDateTimeField

from common.models import AuditEntry
from common.validators import validate_datetime_range


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time within common.validators' range: years 2000–9999, offsets within ±14:00. Outside
    it the database cannot compare (PostgreSQL refuses offsets beyond ±15:59, year 1 overflows)."""

    default_validators = [validate_datetime_range]


class BoundedIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class AuditFilterSet(django_filters.FilterSet):
    """The audit log, for the Settings page and GET /api/audit alike."""

    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains", label="Who")
    action = django_filters.CharFilter(lookup_expr="startswith", label="Action (e.g. command.)")
    object_type = django_filters.CharFilter(label="Object type (e.g. fleet.instance)")
    since = BoundedIsoDateTimeFilter(field_name="created", lookup_expr="gte", label="From (ISO time)")
    until = BoundedIsoDateTimeFilter(field_name="created", lookup_expr="lte", label="Until (ISO time)")

    class Meta:
        model = AuditEntry
        fields = ["actor", "action", "object_type", "since", "until"]
