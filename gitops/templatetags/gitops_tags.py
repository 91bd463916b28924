import json

from django import template

from ..reconcile import DECISIONS

register = template.Library()


@register.filter
def as_yaml_value(value) -> str:
    """A configuration value as it is written in the repository: false, 22, "text" stays text, null."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


@register.filter
def decision(action: str) -> str:
    """What the strategy decided about a key (a run's `changes[].action`), in words."""
    return DECISIONS.get(action, action)
