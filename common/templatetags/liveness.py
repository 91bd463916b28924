from django import template

from common.liveness import down_components

register = template.Library()

WHAT_STOPS = {
    "worker": "background work (evaluations, canary rounds, GitOps syncs, notifications) is not being done",
    "beat": "scheduled work (offline marking, canary rounds, GitOps and time-based scans) is not being started",
}
LABELS = {"worker": "The Celery worker", "beat": "Celery beat"}


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


@register.inclusion_tag("includes/liveness_banner.html")
def liveness_banner():
    """Every page: which background process has not been seen for more than LIVENESS_STALE_SECONDS (one query)."""
    problems = []
    for component, age in down_components():
        when = "has never been seen" if age is None else f"has not been seen for {_age(age)}"
        problems.append(f"{LABELS[component]} {when}: {WHAT_STOPS[component]}.")
    return {"problems": problems}
