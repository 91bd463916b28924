"""When rounds happen, how long they may take, and whether a deployment's settings can be honoured. Pure.

Rounds of a step run on a grid: `anchor + k × interval` (k = 0, 1, …), the anchor being the moment the
step's change had been applied everywhere (its evaluation start). Each round is enqueued for its own due
time (canary.services.scheduling), so the interval is the one the operator chose, not a scheduler tick.
A round must end before the next is due: its probes get at most half the interval as their timeout,
and the whole round (probes, then recording) has to fit in the interval for the instances it polls.
"""

import math
from datetime import datetime, timedelta

from .probes import round_deadline

MIN_INTERVAL = 1  # seconds: what the grid and the task queue can honour to within 0.5 s
MAX_INTERVAL = 3600
MIN_PROBE_TIMEOUT = 0.2
# Work a round does per polled instance after its probes: judging it and recording its poll
# (bench/canary_schedule.py measures the whole round at 10,000 instances; rounded up for a busy machine).
RECORD_PER_INSTANCE = 0.0002
ROUND_OVERHEAD = 0.1  # reading the deployment and committing the round


def probe_timeout(interval: int, configured: float) -> float:
    """The per-request health timeout of a deployment: the setting, but at most half the interval."""
    return round(max(MIN_PROBE_TIMEOUT, min(float(configured), interval / 2)), 3)


def round_seconds(interval: int, configured: float, instances: int) -> float:
    """The longest a round over `instances` can take: the probes' deadline plus recording each poll."""
    timeout = probe_timeout(interval, configured)
    return round_deadline(timeout, instances) + RECORD_PER_INSTANCE * instances + ROUND_OVERHEAD


def interval_problem(interval: int, configured: float, instances: int) -> str:
    """Why rounds every `interval` s over `instances` instances cannot keep time ("" when they can)."""
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        return f"The check interval must be between {MIN_INTERVAL} second and {MAX_INTERVAL // 3600} hour."
    needed = round_seconds(interval, configured, instances)
    if needed <= interval:
        return ""
    shortest = next(i for i in range(interval, MAX_INTERVAL + 1) if round_seconds(i, configured, instances) <= i)
    return (
        f"A round over {instances} instances can take up to {needed:.1f} s, longer than a {interval} s interval: "
        f"the rounds could not start on time. Choose an interval of at least {shortest} s."
    )


def rounds_fit(consecutive: int, interval: int, max_duration: int) -> bool:
    """Can `consecutive` rounds in a row happen within the max duration? Rounds come at 0, interval, 2×…,
    so c rounds need (c − 1) × interval seconds of evaluation (assuming the change applies at once)."""
    return (consecutive - 1) * interval <= max_duration


def next_due(anchor: datetime, interval: int, now: datetime) -> datetime:
    """The first grid time strictly after `now` (rounds missed while no worker ran are skipped, not bunched)."""
    if now < anchor:
        return anchor
    k = math.floor((now - anchor).total_seconds() / interval) + 1
    return anchor + timedelta(seconds=k * interval)


def rounds_left(anchor: datetime, interval: int, now: datetime, deadline: datetime | None) -> int | None:
    """How many more grid rounds come after `now` and no later than the deadline (None: no deadline)."""
    if deadline is None:
        return None
    last = math.floor((deadline - anchor).total_seconds() / interval)
    done = math.floor((now - anchor).total_seconds() / interval) if now >= anchor else -1
    return max(0, last - done)
