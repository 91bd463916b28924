"""The base FilterSet every list uses, FilterSets of common's own lists (the audit log), and filter
fields and widgets with the shared input rules."""

import django_filters
from django import forms
from django.utils.html import format_html
from django_filters.conf import settings as filter_settings
from django_filters.fields import IsoDateTimeField

from common.models import AuditEntry
from common.validators import validate_datetime_range


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time within common.validators' range: years 2000–9999, offsets within ±14:00. Outside
    it the database cannot compare (PostgreSQL refuses offsets beyond ±15:59, year 1 overflows)."""

    default_validators = [validate_datetime_range]


class BoundedIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


ANY = "Any"


class AnyBooleanSelect(forms.NullBooleanSelect):
    """Yes / No / Any instead of Django's Unknown; parses the same values (true, false, 1, 0)."""

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.choices = [("unknown", ANY), ("true", "Yes"), ("false", "No")]


class DateTimeInput(forms.DateTimeInput):
    """The browser's date and time picker; it sends 2026-12-01T13:45, an ISO time the filter parses."""

    input_type = "datetime-local"

    def format_value(self, value):
        return value.strftime("%Y-%m-%dT%H:%M") if hasattr(value, "strftime") else value


class AutocompleteInput(forms.TextInput):
    """A text box whose suggestions come, as the person types, from `url` (htmx fills a <datalist> with
    <option>s; the endpoint gets the typed text under the box's name). Without JavaScript it is a plain text box."""

    def __init__(self, url: str, attrs=None):
        super().__init__(attrs)
        self.url = url

    def render(self, name, value, attrs=None, renderer=None):
        attrs = dict(attrs or {})
        options = f"{attrs.get('id') or name}-options"
        attrs.update(
            {
                "list": options,
                "autocomplete": "off",
                "hx-get": str(self.url),
                "hx-trigger": "input changed delay:250ms, focus once",
                "hx-target": f"#{options}",
            }
        )
        return super().render(name, value, attrs, renderer) + format_html('<datalist id="{}"></datalist>', options)


class FilterSet(django_filters.FilterSet):
    """Every list's filters look alike: a choice offers "Any" (not "---------"), a yes/no filter
    Yes / No / Any (not "Unknown"). The API reads the same FilterSets; labels and widgets do not change
    what it accepts."""

    @classmethod
    def get_filters(cls):
        filters = super().get_filters()
        for f in filters.values():
            if isinstance(f, django_filters.ChoiceFilter | django_filters.ModelChoiceFilter):
                if f.extra.get("empty_label", filter_settings.EMPTY_CHOICE_LABEL) == filter_settings.EMPTY_CHOICE_LABEL:
                    f.extra["empty_label"] = ANY
            elif isinstance(f, django_filters.BooleanFilter) and "widget" not in f.extra:
                f.extra["widget"] = AnyBooleanSelect
        return filters


class AuditFilterSet(FilterSet):
    """The audit log, for the Settings page and GET /api/audit alike."""

    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains", label="Who")
    action = django_filters.CharFilter(
        lookup_expr="startswith", label="Action", widget=forms.TextInput(attrs={"placeholder": "command."})
    )
    object_type = django_filters.CharFilter(
        label="Object type", widget=forms.TextInput(attrs={"placeholder": "fleet.instance"})
    )
    since = BoundedIsoDateTimeFilter(field_name="created", lookup_expr="gte", label="From", widget=DateTimeInput)
    until = BoundedIsoDateTimeFilter(field_name="created", lookup_expr="lte", label="Until", widget=DateTimeInput)

    class Meta:
        model = AuditEntry
        fields = ["actor", "action", "object_type", "since", "until"]
