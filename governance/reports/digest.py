"""The weekly compliance digest to the admins (settings.COMPLIANCE_DIGEST_ENABLED, off by default).

Serialisation: the week's ComplianceDigest row is inserted before anything is sent; its unique `week`
makes a second insert fail, so two beats, a retried task or a daily schedule send one digest per week.
"""

import logging
from datetime import date, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from common.services import absolute_url, fleet_admins

from ..choices import SnapshotKind, ViolationStatus
from ..models import ComplianceDigest, RemediationAttempt, Violation
from ..remediation.choices import FAILED_OUTCOMES, AttemptOutcome
from ..services.snapshots import snapshot_day
from .compliance import compliance_report

logger = logging.getLogger(__name__)


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def digest_context(*, end: date) -> dict:
    """What the digest says: the last 7 days of fleet, policy and group scores, violations, remediation."""
    start = end - timedelta(days=6)
    fleet = compliance_report(kind=SnapshotKind.FLEET, start=start, end=end)
    since = timezone.now() - timedelta(days=7)
    attempts = RemediationAttempt.objects.filter(created__gte=since).aggregate(
        fixed=Count("pk", filter=Q(outcome=AttemptOutcome.FIXED)),
        failed=Count("pk", filter=Q(outcome__in=FAILED_OUTCOMES)),
        total=Count("pk"),
    )
    open_by_severity = dict(
        Violation.objects.filter(status=ViolationStatus.OPEN).values_list("severity").annotate(n=Count("pk"))
    )
    return {
        "start": start,
        "end": end,
        "fleet": fleet[0] if fleet else None,
        "policies": compliance_report(kind=SnapshotKind.POLICY, start=start, end=end),
        "groups": compliance_report(kind=SnapshotKind.GROUP, start=start, end=end),
        "opened": Violation.objects.filter(first_detected_at__gte=since).count(),
        "resolved": Violation.objects.filter(resolved_at__gte=since).count(),
        "open_by_severity": open_by_severity,
        "remediation": attempts,
        "report_url": absolute_url(reverse("governance:compliance_report")),
    }


def weekly_digest_send(*, now=None) -> dict:
    """Send this week's digest unless it went out already (or digests are off)."""
    if not settings.COMPLIANCE_DIGEST_ENABLED:
        return {"skipped": "COMPLIANCE_DIGEST_ENABLED is off"}
    now = now or timezone.now()
    today = snapshot_day(now)
    week = week_of(today)
    try:
        with transaction.atomic():
            digest = ComplianceDigest.objects.create(week=week)
    except IntegrityError:
        return {"skipped": f"the digest of the week of {week} was sent already"}
    recipients = [u.email for u in fleet_admins() if u.email]
    context = digest_context(end=today - timedelta(days=1))
    subject = f"[Fleet governance] Weekly compliance digest, {context['start']:%Y-%m-%d} – {context['end']:%Y-%m-%d}"
    body = render_to_string("emails/weekly_digest.txt", context)
    try:
        if recipients:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:  # recorded on the week's row; the admins still see the report page
        logger.exception("could not send the weekly digest")
        ComplianceDigest.objects.filter(pk=digest.pk).update(error=str(exc)[:2000])
        return {"week": week.isoformat(), "error": str(exc)}
    ComplianceDigest.objects.filter(pk=digest.pk).update(sent_at=timezone.now(), recipients=len(recipients))
    return {"week": week.isoformat(), "recipients": len(recipients)}
