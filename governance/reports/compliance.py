"""The compliance report: one row per policy (or group) over a date range, from the daily snapshots.

Pure enough to read: one query for the range, then plain Python. A day without a snapshot (the beat was
down, the policy did not exist yet) is simply absent from the row's days; averages count the days present.
"""

from dataclasses import dataclass, field
from datetime import date, timedelta

from common.exceptions import ErrorCollector

from .. import scores
from ..choices import SnapshotKind
from ..models import ComplianceSnapshot

MAX_DAYS = 366
KINDS = (SnapshotKind.POLICY, SnapshotKind.GROUP)  # what the API and page offer; the digest also reads FLEET


@dataclass
class ReportRow:
    id: int | None
    label: str
    days: list[dict] = field(default_factory=list)  # [{"date", "score", "instances"}], oldest first

    @property
    def scored(self) -> list[float]:
        return [d["score"] for d in self.days if d["score"] is not None]

    @property
    def first(self):
        return self.scored[0] if self.scored else None

    @property
    def last(self):
        return self.scored[-1] if self.scored else None

    @property
    def average(self):
        return scores.display(sum(self.scored) / len(self.scored)) if self.scored else None

    @property
    def lowest(self):
        return min(self.scored) if self.scored else None

    @property
    def change(self):
        return scores.display(self.last - self.first) if self.scored else None

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "first": self.first,
            "last": self.last,
            "average": self.average,
            "lowest": self.lowest,
            "change": self.change,
            "days": self.days,
        }


def parse_range(kind, start, end, *, today: date) -> tuple[str, date, date]:
    """Validate a report request: kind policy|group, ISO dates, start ≤ end, at most MAX_DAYS days.
    Missing dates: the 30 days up to today. Raises ApplicationError with every problem by field."""
    problems = ErrorCollector()
    kind = kind or SnapshotKind.POLICY
    if kind not in KINDS:
        problems.add("kind", "Choose policy or group.")
    parsed = {}
    for name, value, default in (("start", start, today - timedelta(days=29)), ("end", end, today)):
        if value in (None, ""):
            parsed[name] = default
            continue
        try:
            if not (isinstance(value, str) and len(value) == 10 and value.isascii()):
                raise ValueError
            parsed[name] = date.fromisoformat(value)
        except ValueError:
            problems.add(name, "A date as YYYY-MM-DD is required.")
    if len(parsed) == 2:
        if parsed["start"] > parsed["end"]:
            problems.add("end", "The end must not be before the start.")
        elif (parsed["end"] - parsed["start"]).days + 1 > MAX_DAYS:
            problems.add("end", f"At most {MAX_DAYS} days at once.")
    problems.raise_if_any()
    return kind, parsed["start"], parsed["end"]


def compliance_report(*, kind: str, start: date, end: date) -> list[ReportRow]:
    """Each policy's (or group's) daily score between start and end (inclusive), worst last score first."""
    key = {SnapshotKind.POLICY: "policy_id", SnapshotKind.GROUP: "group_id"}.get(kind, "kind")
    rows: dict[object, ReportRow] = {}
    snapshots = (
        ComplianceSnapshot.objects.filter(kind=kind, date__gte=start, date__lte=end)
        .order_by("date", "pk")
        .values(key, "label", "date", "score", "instances")
    )
    for snap in snapshots:
        ident = snap[key]
        ident = ident if isinstance(ident, int) else None
        row = rows.setdefault(ident if ident is not None else f"label:{snap['label']}", ReportRow(ident, snap["label"]))
        row.label = snap["label"]  # the latest name
        row.days.append({"date": snap["date"], "score": snap["score"], "instances": snap["instances"]})
    return sorted(rows.values(), key=lambda r: (r.last is None, r.last if r.last is not None else 0, r.label))
