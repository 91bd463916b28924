"""Template helpers shared by every page: sortable column headers and relative times."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.simple_tag(takes_context=True)
def sort_header(context, key: str, label: str):
    """A column header that sorts the list by `key` (one of the view's sort_fields): ascending first,
    descending on a second click; the filters in the URL are kept, the page is reset."""
    request, sort = context["request"], context.get("sort")
    current = sort.key == key if sort else False
    descending = current and sort.descending
    query = request.GET.copy()
    query.pop("page", None)
    query["sort"] = key if descending or not current else f"-{key}"
    arrow = (" ▼" if descending else " ▲") if current else ""
    state = ("descending" if descending else "ascending") if current else "none"
    return format_html(
        '<a class="sort-link{}" href="?{}" aria-sort="{}">{}{}</a>',
        " active" if current else "",
        query.urlencode(),
        state,
        label,
        arrow,
    )


@register.filter
def ago(value, now=None):
    """One way to say a time relative to now, everywhere: "2 seconds ago", "3 hours ago", "in 2 days".

    Django's timesince rounds to minutes ("0 minutes ago"); under a minute this says the seconds."""
    if not isinstance(value, datetime):
        return value if value else ""
    now = now or timezone.now()
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    delta = (now - value).total_seconds()
    if abs(delta) < 60:
        seconds = int(abs(delta))
        if seconds == 0:
            return "just now"
        words = f"{seconds} second{'s' if seconds != 1 else ''}"
        return f"{words} ago" if delta > 0 else f"in {words}"
    # Django truncates ("in 11 months" for a licence ending in a year less a few seconds): a time within half
    # of the next smaller unit below a whole one is said as that whole one.
    size = abs(delta)
    half = next((smaller for unit, smaller in _ROUNDING if size >= unit), 0) / 2
    rounded = timedelta(seconds=size + half)
    if delta > 0:
        return f"{timesince(now - rounded, now, depth=1)} ago"
    return f"in {timeuntil(now + rounded, now, depth=1)}"


# (a unit in seconds, the next smaller one): year, month, week, day, hour, minute.
_ROUNDING = (
    (365 * 86400, 30 * 86400),
    (30 * 86400, 7 * 86400),
    (7 * 86400, 86400),
    (86400, 3600),
    (3600, 60),
    (60, 1),
)


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@register.filter
def weekdays(days) -> str:
    """[5, 6] → "Sat, Sun" (0 is Monday, as Python's weekday())."""
    return ", ".join(WEEKDAYS[d] for d in days or () if isinstance(d, int) and 0 <= d < 7)


@register.filter
def diff_lines(text) -> list[tuple[str, str]]:
    """A unified diff's lines, each with its kind for colouring: add, del, hunk, or "" (context, headers)."""
    lines = []
    for line in (text or "").splitlines():
        if line.startswith(("+++", "---")):
            kind = "head"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = ""
        lines.append((kind, line))
    return lines
