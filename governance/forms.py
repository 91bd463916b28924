"""Type-specific rule editors. Each reads one rule per line and produces the canonical rules JSON,
validated by the same function the API uses (evaluators.validate_rules)."""

import json
import re

from django import forms
from django.utils import timezone

from fleet.forms import ScopeFormMixin

from . import evaluators
from .choices import OsMatch, PolicyType
from .models import Policy

_VERSION = r"[A-Za-z0-9][A-Za-z0-9._+\-~]*"
REQUIRED_LINE = re.compile(rf"^(?P<name>\S+)(?:\s*>=\s*(?P<min>{_VERSION}))?(?:\s+(?P<running>running))?$")
BLOCKED_LINE = re.compile(rf"^(?P<pattern>\S+?)(?:\s*>=\s*(?P<min>{_VERSION}))?(?:\s*<\s*(?P<below>{_VERSION}))?$")
DEADLINE_LINE = re.compile(r"^(?P<name>[^\s:]+)\s*[:=]?\s*(?P<hours>\d+)\s*h?$")
SETTING_LINE = re.compile(r"^(?P<key>[^=\s]+)\s*=\s*(?P<value>.*)$")


def _lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, line.strip())
        for n, line in enumerate((text or "").splitlines(), 1)
        if line.strip() and not line.strip().startswith("#")
    ]


def _parse_value(text: str):
    """`true`, `22`, `"quoted"` → JSON values; anything else is a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


class PolicyForm(ScopeFormMixin, forms.Form):
    """Common fields; subclasses add the rule editor of one policy type."""

    policy_type: str = ""
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    enabled = forms.BooleanField(required=False, initial=True)

    field_order = ["name", "description"]

    def __init__(self, *args, policy: Policy | None = None, **kwargs):
        if policy is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": policy.name,
                "description": policy.description,
                "enabled": policy.enabled,
                **self.scope_initial(policy),
                **self.rules_initial(policy.rules),
            }
        super().__init__(*args, **kwargs)

    def rules_initial(self, rules: dict) -> dict:  # pragma: no cover - each editor implements it
        return {}

    def build_rules(self, cleaned) -> dict:  # pragma: no cover - each editor implements it
        raise NotImplementedError

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            rules = self.build_rules(cleaned)
            cleaned["rules"] = evaluators.validate_rules(self.policy_type, rules)
        except evaluators.RuleError as exc:
            self.add_rule_errors(exc.errors)
        return cleaned

    # Where a problem inside the rules is shown: the form field that edits that part of the rules.
    rule_fields: dict[str, str] = {}

    def add_rule_errors(self, errors: dict[str, list[str]]) -> None:
        """Each problem on its field, prefixed by its path inside that field (`apps[1].min_version: …`)."""
        for path, messages in errors.items():
            top = re.split(r"[.\[]", path, maxsplit=1)[0]
            field = self.rule_fields.get(top)
            for message in messages:
                self.add_error(field, message if path in ("", top) or field is None else f"{path}: {message}")


class RequiredAppsForm(PolicyForm):
    policy_type = PolicyType.REQUIRED_APPS
    rule_fields = {"apps": "apps"}
    apps = forms.CharField(
        label="Required apps",
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono"}),
        help_text="One per line: name, optionally '>= minimum version', optionally 'running'. "
        "E.g. 'monitoring-agent >= 2.1 running'.",
    )

    def rules_initial(self, rules):
        return {
            "apps": "\n".join(
                a["name"]
                + (f" >= {a['min_version']}" if a.get("min_version") else "")
                + (" running" if a.get("running") else "")
                for a in rules.get("apps", [])
            )
        }

    def build_rules(self, cleaned):
        apps = []
        for n, line in _lines(cleaned.get("apps")):
            m = REQUIRED_LINE.match(line)
            if not m:
                raise evaluators.RuleError(
                    errors={"apps": [f"Line {n} ('{line}'): write 'name', 'name >= 1.2' or 'name >= 1.2 running'."]}
                )
            apps.append({"name": m["name"], "min_version": m["min"], "running": bool(m["running"])})
        return {"apps": apps}


class BlockedAppsForm(PolicyForm):
    policy_type = PolicyType.BLOCKED_APPS
    rule_fields = {"apps": "apps"}
    apps = forms.CharField(
        label="Blocked apps",
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono"}),
        help_text="One per line: a name or glob (insecure-*), optionally a version range: '< 2.0' (below), "
        "'>= 1.0' (from), or both. E.g. 'outdated-db < 2.0'.",
    )

    def rules_initial(self, rules):
        return {
            "apps": "\n".join(
                a["pattern"]
                + (f" >= {a['min_version']}" if a.get("min_version") else "")
                + (f" < {a['below_version']}" if a.get("below_version") else "")
                for a in rules.get("apps", [])
            )
        }

    def build_rules(self, cleaned):
        apps = []
        for n, line in _lines(cleaned.get("apps")):
            m = BLOCKED_LINE.match(line)
            if not m:
                raise evaluators.RuleError(
                    errors={
                        "apps": [
                            f"Line {n} ('{line}'): write 'name', 'name < 2.0', 'name >= 1.0' or 'name >= 1.0 < 2.0'."
                        ]
                    }
                )
            apps.append({"pattern": m["pattern"], "min_version": m["min"], "below_version": m["below"]})
        return {"apps": apps}


class UpdateRulesForm(PolicyForm):
    policy_type = PolicyType.UPDATE_RULES
    rule_fields = {"apps": "app_deadlines", "os_deadline_hours": "os_deadline_hours"}
    os_deadline_hours = forms.IntegerField(
        label="OS updates: deadline (hours)",
        required=False,
        min_value=1,
        help_text="Install OS releases within this many hours of release. Empty: no OS rule.",
    )
    app_deadlines = forms.CharField(
        label="App updates: deadlines",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
        help_text="One per line: 'app-name: hours', e.g. 'nginx: 48'. The clock starts at the oldest pending release.",
    )

    def rules_initial(self, rules):
        return {
            "os_deadline_hours": rules.get("os_deadline_hours"),
            "app_deadlines": "\n".join(f"{a['name']}: {a['deadline_hours']}" for a in rules.get("apps", [])),
        }

    def build_rules(self, cleaned):
        apps = []
        for n, line in _lines(cleaned.get("app_deadlines")):
            m = DEADLINE_LINE.match(line)
            if not m:
                raise evaluators.RuleError(
                    errors={"apps": [f"Line {n} ('{line}'): write 'app-name: hours', e.g. 'nginx: 48'."]}
                )
            apps.append({"name": m["name"], "deadline_hours": int(m["hours"])})
        return {"os_deadline_hours": cleaned.get("os_deadline_hours"), "apps": apps}


class BaselineForm(PolicyForm):
    policy_type = PolicyType.BASELINE
    rule_fields = {"os_version": "os_version", "os_match": "os_match", "settings": "settings"}
    os_version = forms.CharField(
        label="OS version", required=False, max_length=64, help_text="E.g. 24.04.2. Empty: no OS rule."
    )
    os_match = forms.ChoiceField(label="OS match", choices=OsMatch.choices, initial=OsMatch.MINIMUM)
    settings = forms.CharField(
        label="Settings",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono"}),
        help_text="One per line: 'key = expected value', e.g. 'ssh.password_auth = false'. true/false and numbers are typed.",
    )

    def rules_initial(self, rules):
        return {
            "os_version": rules.get("os_version") or "",
            "os_match": rules.get("os_match") or OsMatch.MINIMUM,
            "settings": "\n".join(
                f"{k} = {json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in (rules.get("settings") or {}).items()
            ),
        }

    def build_rules(self, cleaned):
        values = {}
        for n, line in _lines(cleaned.get("settings")):
            m = SETTING_LINE.match(line)
            if not m:
                raise evaluators.RuleError(
                    errors={
                        "settings": [f"Line {n} ('{line}'): write 'key = value', e.g. 'ssh.password_auth = false'."]
                    }
                )
            if m["key"] in values:
                raise evaluators.RuleError(errors={"settings": [f"Line {n}: '{m['key']}' is set twice."]})
            values[m["key"]] = _parse_value(m["value"].strip())
        return {
            "os_version": cleaned.get("os_version") or None,
            "os_match": cleaned.get("os_match"),
            "settings": values,
        }


POLICY_FORMS = {
    PolicyType.REQUIRED_APPS: RequiredAppsForm,
    PolicyType.BLOCKED_APPS: BlockedAppsForm,
    PolicyType.UPDATE_RULES: UpdateRulesForm,
    PolicyType.BASELINE: BaselineForm,
}

TYPE_HELP = {
    PolicyType.REQUIRED_APPS: "Applications that must be installed (optionally a minimum version, optionally running).",
    PolicyType.BLOCKED_APPS: "Applications that must not be installed: names or globs, optionally a version range.",
    PolicyType.UPDATE_RULES: "Install OS and/or app releases within a deadline after they become available.",
    PolicyType.BASELINE: "An OS version (exact or minimum) and settings with expected values.",
}


class ExceptionForm(ScopeFormMixin, forms.Form):
    policy = forms.ModelChoiceField(
        queryset=Policy.objects.all(),
    )
    rule_key = forms.CharField(
        label="Rule (optional)",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"class": "mono"}),
        help_text="Empty exempts the whole policy. Or one rule key, e.g. app:monitoring-agent, blocked:insecure-*, "
        "update:os, setting:ssh.password_auth.",
    )
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Why this is acceptable.")
    expires_at = forms.DateTimeField(
        label="Expires",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="The exception ends then and its violations re-open.",
    )

    def clean_expires_at(self):
        value = self.cleaned_data["expires_at"]
        if value <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return value
