"""Serializer fields for input from outside: the same rules as the forms (common.validators).

Use these instead of DRF's plain fields wherever a value comes from a user or an agent:

- `TextField`: a string that can be stored (no NUL, no lone surrogate), `max_length` as the model's;
- `BoundedDateTimeField`: years 2000–9999 and offsets within ±14:00 (year 1 overflows on conversion);
- `FiniteFloatField`: refuses inf and NaN (`1e400` parses to inf);
- `VersionField`: a version string that orders (common.versions.is_valid);
- `GitRefField`: a branch name git accepts.
"""

import math

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from common import validators


class TextField(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(validators.validate_storable_text)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class BoundedDateTimeField(serializers.DateTimeField):
    def to_internal_value(self, value):
        if isinstance(value, str):
            # Checked as written, before conversion: year 1 at +14:00 would overflow on the way to UTC.
            try:
                written = parse_datetime(value)
            except ValueError:
                written = None
            if written is not None and written.tzinfo is not None:
                validators.validate_datetime_range(written)
        converted = super().to_internal_value(value)
        validators.validate_datetime_range(converted)
        return converted


class FiniteFloatField(serializers.FloatField):
    default_error_messages = {"not_finite": "Must be a finite number."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("not_finite")
        return value


class VersionField(TextField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)
        self.validators.append(validators.validate_version)


class GitRefField(TextField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 255)
        super().__init__(**kwargs)
        self.validators.append(validators.validate_git_ref)
