"""The poll history filter: one FilterSet for the API (`GET /api/fleet/canary/{id}/polls`) and the detail page."""

import django_filters
from django import forms

from common.filters import FilterSet

from .choices import PollPurpose
from .models import HealthPoll


class IdFilter(django_filters.NumberFilter):
    """A whole number within the database's integer range (a bigger one is a 400, not a database error)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**31 - 1)
        super().__init__(*args, **kwargs)


class HealthPollFilter(FilterSet):
    instance = IdFilter(field_name="instance_id", label="Instance id")
    round = IdFilter(field_name="round", label="Round")
    step = IdFilter(field_name="step", label="Step", max_value=32767)
    purpose = django_filters.ChoiceFilter(choices=PollPurpose.choices)
    healthy = django_filters.BooleanFilter()

    class Meta:
        model = HealthPoll
        fields = ["instance", "round", "step", "purpose", "healthy"]
