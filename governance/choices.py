from django.db import models


class PolicyType(models.TextChoices):
    REQUIRED_APPS = "required_apps", "Required apps"
    BLOCKED_APPS = "blocked_apps", "Blocked apps"
    UPDATE_RULES = "update_rules", "Update rules"
    BASELINE = "baseline", "Baseline"


class PolicyMode(models.TextChoices):
    """audit reports violations; enforce also queues each open violation's fix through the command queue."""

    AUDIT = "audit", "Audit"
    ENFORCE = "enforce", "Enforce"


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


# The severity of a violation follows from the type of the policy it breaks (spec: Violation Severity).
SEVERITY_BY_TYPE = {
    PolicyType.BLOCKED_APPS: Severity.CRITICAL,
    PolicyType.REQUIRED_APPS: Severity.WARNING,
    PolicyType.UPDATE_RULES: Severity.WARNING,
    PolicyType.BASELINE: Severity.INFO,
}
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


class ViolationStatus(models.TextChoices):
    OPEN = "open", "Open"
    EXEMPTED = "exempted", "Exempted"
    RESOLVED = "resolved", "Resolved"


# Not resolved: the violation is current (at most one such row per policy, instance and rule).
CURRENT_STATUSES = (ViolationStatus.OPEN, ViolationStatus.EXEMPTED)


class PolicyState(models.TextChoices):
    """How one instance stands against one policy in scope. One letter: stored for every pair in InstanceCompliance.states."""

    COMPLIANT = "c", "compliant"
    NONCOMPLIANT = "n", "noncompliant"
    EXEMPT = "e", "exempt"
    UNKNOWN = "u", "unknown"


class OsMatch(models.TextChoices):
    EXACT = "exact", "Exactly this version"
    MINIMUM = "minimum", "This version or newer"


class ReleaseOutcome(models.TextChoices):
    PENDING = "", "Pending"
    APPLIED = "applied", "Applied"
    WITHDRAWN = "withdrawn", "No longer offered"


class SnapshotKind(models.TextChoices):
    FLEET = "fleet", "Fleet"
    GROUP = "group", "Group"
    POLICY = "policy", "Policy"


class ExceptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class VersionSource(models.TextChoices):
    """Where a change of a policy came from (PolicyVersion.source)."""

    UI = "ui", "UI"
    API = "api", "API"
    IMPORT = "import", "Import"
    GIT = "git", "Git commit"
    SYSTEM = "system", "System"
