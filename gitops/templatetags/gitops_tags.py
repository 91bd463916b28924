import json

from django import template

register = template.Library()


@register.filter
def as_yaml_value(value) -> str:
    """A configuration value as it is written in the repository: false, 22, "text" stays text, null."""
    if isinstance(value, str):
        return value
    return json.dumps(value)
