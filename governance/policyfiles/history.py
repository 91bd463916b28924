"""Reads over policy history: versions with their diffs, and "was instance X compliant with P on day D".

How precise the day answer is (docs/policies.md says the same):
- the state is the one at the END of day D (midnight in the panel's time zone; now, for today), read
  from the violation rows' first_detected_at/resolved_at: as exact as evaluation was timely (an
  evaluation runs on each changed heartbeat and in the sweeps), not a record of every minute;
- the version in force is the last one created before that moment;
- a waiver applied if it existed, had not expired and was not revoked at that moment, named the
  violated rule (or the whole policy) and its scope covers the instance — by today's group and tag
  membership, which the panel does not keep history of; the same holds for the policy's scope;
- an instance whose daily snapshot of D says it was stale (not reporting) is "unknown".
"""

import difflib
from datetime import datetime, time, timedelta

from django.db.models import Q
from django.utils import timezone

from fleet.choices import ScopeKind

from ..models import InstanceSnapshot, PolicyException, PolicyVersion, Violation
from .format import render


def versions_with_diffs(policy) -> list[dict]:
    """The policy's versions, newest first, each with the unified diff from the one before it."""
    versions = list(PolicyVersion.objects.filter(policy=policy).select_related("actor").order_by("number"))
    rows, before = [], ""
    for v in versions:
        text = render(v.snapshot)
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"v{v.number - 1}" if before else "(none)",
                f"v{v.number}",
            )
        )
        rows.append({"version": v, "yaml": text, "diff": diff})
        before = text
    return rows[::-1]


def _in_scope(scope: dict, instance) -> bool:
    kind = scope.get("kind")
    if kind == ScopeKind.GROUPS:
        return bool(set(scope["groups"]) & set(instance.groups.values_list("name", flat=True)))
    if kind == ScopeKind.TAGS:
        tags = {f"{k}={v}" for k, v in instance.tags.values_list("key", "value")}
        return set(scope["tags"]) <= tags
    if kind == ScopeKind.INSTANCES:
        return instance.name in scope["instances"]
    return True


def _waiver_for(policy, instance, violation, at):
    waivers = PolicyException.objects.filter(policy=policy, created__lt=at, expires_at__gt=at).filter(
        Q(revoked_at__isnull=True) | Q(revoked_at__gt=at)
    )
    for w in waivers.filter(Q(rule_key="") | Q(rule_key=violation.rule_key)).prefetch_related(
        "scope_groups", "scope_instances"
    ):
        group_ids = set(instance.groups.values_list("pk", flat=True))
        tags = {f"{k}={v}" for k, v in instance.tags.values_list("key", "value")}
        if w.scope.matches(instance_id=instance.pk, group_ids=group_ids, tags=tags):
            return w
    return None


def compliance_on(policy, instance, day) -> dict:
    """The standing of `instance` against `policy` at the end of `day`, with the version and waivers."""
    now = timezone.now()
    end = timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))
    at = min(end, now)
    answer = {"policy": policy.pk, "instance": instance.pk, "instance_name": instance.name, "date": day, "at": at}
    answer.update(state="unknown", reason="", version=None, waivers=[], violations=[])
    version = PolicyVersion.objects.filter(policy=policy, created__lt=at).order_by("-number").first()
    answer["version"] = version
    if version is None:
        return {**answer, "reason": "The policy did not exist yet at the end of that day."}
    if not version.snapshot.get("enabled", True):
        return {**answer, "reason": "The policy was disabled at the end of that day."}
    if instance.registered_at >= at:
        return {**answer, "reason": "The instance was not registered yet at the end of that day."}
    if not _in_scope(version.snapshot["scope"], instance):
        return {**answer, "state": "not_applicable", "reason": "The instance is not in the policy's scope."}
    snapshot = InstanceSnapshot.objects.filter(instance=instance, date=day).first()
    if snapshot is not None and snapshot.stale:
        return {**answer, "reason": "The instance was not reporting (stale) that day."}
    current = Violation.objects.filter(policy=policy, instance=instance, first_detected_at__lt=at).filter(
        Q(resolved_at__isnull=True) | Q(resolved_at__gt=at)
    )
    violations = list(current.order_by("first_detected_at"))
    answer["violations"] = violations
    if not violations:
        return {**answer, "state": "compliant", "reason": "No violation of the policy was open at that moment."}
    waivers = [_waiver_for(policy, instance, v, at) for v in violations]
    if all(waivers):
        unique = list({w.pk: w for w in waivers}.values())
        return {**answer, "state": "exempt", "waivers": unique, "reason": "Every open violation was waived."}
    unwaived = sum(1 for w in waivers if w is None)
    return {
        **answer,
        "state": "noncompliant",
        "waivers": [w for w in {w.pk: w for w in waivers if w}.values()],
        "reason": f"{unwaived} violation(s) open and not waived at that moment.",
    }
