"""Governance's list tables (common.tables): policies, violations, exceptions, instance scores. The
violation and score columns are also the API's CSV export (governance.api: violations/compliance export)."""

from django.db.models import Case, Value, When
from django.utils import timezone

from common.tables import Column, Table

from .choices import Severity

SEVERITY_RANK = Case(
    When(severity=Severity.CRITICAL, then=Value(3)),
    When(severity=Severity.WARNING, then=Value(2)),
    default=Value(1),
)
# The violations list's sortable columns, for the page and GET /api/governance/violations/export alike.
VIOLATION_SORT = {
    "severity": SEVERITY_RANK,
    "status": "status",
    "policy": "policy_name",
    "instance": "instance__name",
    "rule": "rule",
    "first": "first_detected_at",
    "last": "last_seen_at",
}
SCORE_SORT = {"instance": "instance__name", "met": "met", "exempt": "exempt", "score": "score"}


def _can_write(view) -> bool:
    return view.can_write


def _names(relation):
    return lambda obj: [str(o) for o in getattr(obj, relation).all()]  # prefetched by the selector


class PolicyTable(Table):
    name = "policies"
    rows_template = "governance/_policy_rows.html"
    empty_title = "No policies yet"
    empty_text = "Create a policy to define the expected state of your fleet."
    columns = [
        Column("id", html=False),
        Column("name", "Name", sort="name"),
        Column("description", html=False),
        Column("type", "Type", value="policy_type", sort="type"),
        Column("severity", "Severity"),
        Column("scope", "Scope", value="scope_label"),
        Column("open_violations", "Open violations", sort="open", css="text-end"),
        Column("passing", "Passing", value="compliance.score", css="text-end"),
        Column("enabled", "Enabled", sort="enabled"),
        Column("actions", "", export=False, show=_can_write),
    ]


class ViolationTable(Table):
    name = "violations"
    rows_template = "governance/_violation_body.html"
    empty_title = "No violations"
    empty_text = "Nothing matches: every instance meets these policies."
    columns = [
        Column("id", html=False),
        Column("severity", "Severity", sort="severity"),
        Column("status", "Status", sort="status"),
        Column("policy", "Policy", value="policy_name", sort="policy"),
        Column("instance", "Instance", value="instance.name", sort="instance"),
        Column("rule", "Rule", sort="rule"),
        Column("evidence", "Evidence"),
        Column("first_detected_at", "First detected", sort="first"),
        Column("last_seen_at", "Last seen / resolved", sort="last"),
        Column("resolved_at", html=False),
        Column("rule_key", html=False),
        Column("exception_expires_at", value="exception.expires_at", html=False),
    ]


class ExceptionTable(Table):
    name = "exceptions"
    rows_template = "governance/_exception_rows.html"
    empty_title = "No exceptions"
    empty_text = "An exception (waiver) exempts an instance, group or tag scope from a policy or one of its rules until it expires."
    columns = [
        Column("id", html=False),
        Column("policy", "Policy", value="policy.name", sort="policy"),
        Column("rule_key", "Rule", sort="rule"),
        Column("scope", "Scope", value="scope_label"),
        Column("justification", "Justification"),
        Column("expires_at", "Expires", sort="expires"),
        Column("status", "Status", value="current_status"),
        Column("created_by", "Created by", value="created_by.username", sort="created_by"),
        Column("created", html=False),
        Column("revoked_at", html=False),
        Column("revoked_by", value="revoked_by.username", html=False),
        Column("actions", "", export=False, show=_can_write),
    ]

    def prepare(self, rows):
        now = timezone.now()
        for e in rows:
            e.current_status = e.status_at(now)
        return rows


class ScoreTable(Table):
    name = "compliance"
    rows_template = "governance/_score_rows.html"
    empty_title = "No scores yet"
    empty_text = "Scores appear once instances have been evaluated against at least one policy."
    columns = [
        Column("instance_id", html=False),
        Column("instance", "Instance", value="instance.name", sort="instance"),
        Column("status", "Status", value="instance.status"),
        Column("met", "Policies met", sort="met", css="text-end"),
        Column("applicable", html=False),
        Column("exempt", "Exempt", sort="exempt", css="text-end"),
        Column("score", "Score", sort="score", css="text-end"),
        Column("stale", html=False),
        Column("evaluated_at", html=False),
    ]
