"""Type-specific rule editors. Each reads one rule per line and produces the canonical rules JSON,
validated by the same function the API uses (evaluators.validate_rules)."""

import base64
import json
import re

from django import forms
from django.utils import timezone

from fleet.forms import ScopeFormMixin

from . import evaluators
from .choices import OsMatch, PolicyMode, PolicyType
from .models import Policy

_VERSION = r"[A-Za-z0-9][A-Za-z0-9._+\-~]*"
REQUIRED_LINE = re.compile(rf"^(?P<name>\S+)(?:\s*>=\s*(?P<min>{_VERSION}))?(?:\s+(?P<running>running))?\Z")
BLOCKED_LINE = re.compile(rf"^(?P<pattern>\S+?)(?:\s*>=\s*(?P<min>{_VERSION}))?(?:\s*<\s*(?P<below>{_VERSION}))?\Z")
DEADLINE_LINE = re.compile(r"^(?P<name>[^\s:]+)\s*[:=]?\s*(?P<hours>\d+)\s*h?\Z")
SETTING_LINE = re.compile(r"^(?P<key>[^=\s]+)\s*=\s*(?P<value>.*)\Z")


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
    mode = forms.ChoiceField(
        choices=PolicyMode.choices,
        initial=PolicyMode.AUDIT,
        required=False,  # not sent (a client of the old form): the policy's mode as it is
        widget=forms.RadioSelect,
        help_text="Audit reports violations. Enforce also queues each open violation's fix through the command "
        "queue, within the remediation rails below.",
    )

    field_order = ["name", "description"]

    def __init__(self, *args, policy: Policy | None = None, **kwargs):
        if policy is not None and not kwargs.get("initial"):  # FormView always passes initial={}
            kwargs["initial"] = {
                "name": policy.name,
                "description": policy.description,
                "enabled": policy.enabled,
                "mode": policy.mode,
                **self.scope_initial(policy),
                **self.rules_initial(policy.rules),
            }
        super().__init__(*args, **kwargs)

    def clean_mode(self):
        return self.cleaned_data.get("mode") or self.initial.get("mode") or PolicyMode.AUDIT

    # The rule editor's fields; `rules_field` shows the rule errors (and the API's `rules` errors).
    rule_fields: tuple[str, ...] = ("apps",)
    rules_field = "apps"

    @property
    def service_fields(self) -> dict[str, str]:
        """A service's error paths → this form's fields (common.views.add_service_errors)."""
        return {"rules": self.rules_field}

    def rules_initial(self, rules: dict) -> dict:  # pragma: no cover - each editor implements it
        return {}

    def parse(self, cleaned) -> tuple[dict, list[str]]:  # pragma: no cover - each editor implements it
        """The rules the editor's text makes, and what is wrong with it line by line (every line at once)."""
        raise NotImplementedError

    def check_entry(self, n: int, line: str, fragment: dict, problems: list[str]) -> bool:
        """One line's rule checked alone with the API's rules (evaluators.validate_rules)."""
        try:
            evaluators.validate_rules(self.policy_type, fragment)
        except evaluators.RuleError as exc:
            problems.append(f"Line {n} ('{line}'): {exc}")
            return False
        return True

    def clean(self):
        cleaned = super().clean()
        # Checked whatever the other fields say, so every error shows at once, each on its field.
        if any(self.has_error(f) for f in self.rule_fields):
            return cleaned
        rules, problems = self.parse(cleaned)
        for problem in problems:
            self.add_error(self.rules_field, problem)
        if problems:
            return cleaned
        try:
            cleaned["rules"] = evaluators.validate_rules(self.policy_type, rules)
        except evaluators.RuleError as exc:
            self.add_rule_errors(exc.errors)
        return cleaned

    # Where a problem of the whole rules is shown, by the top of its path (`os_version`, `apps[1]…`).
    rule_paths: dict[str, str] = {}

    def add_rule_errors(self, errors: dict[str, list[str]]) -> None:
        """Each problem on the field that edits that part of the rules, prefixed by its path there."""
        for path, messages in errors.items():
            top = re.split(r"[.\[]", path, maxsplit=1)[0]
            field = self.rule_paths.get(top, self.rules_field)
            for message in messages:
                self.add_error(field, message if path in ("", top) else f"{path}: {message}")


def _match_lines(text, pattern, hint: str, problems: list[str]):
    """(line number, line, match) of each rule line that fits `pattern`; the others become problems."""
    for n, line in _lines(text):
        m = pattern.match(line)
        if m:
            yield n, line, m
        else:
            problems.append(f"Line {n} ('{line}'): {hint}")


class RequiredAppsForm(PolicyForm):
    policy_type = PolicyType.REQUIRED_APPS
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

    def parse(self, cleaned):
        apps, problems = [], []
        hint = "write 'name', 'name >= 1.2' or 'name >= 1.2 running'."
        for n, line, m in _match_lines(cleaned.get("apps"), REQUIRED_LINE, hint, problems):
            app = {"name": m["name"], "min_version": m["min"], "running": bool(m["running"])}
            if self.check_entry(n, line, {"apps": [app]}, problems):
                apps.append(app)
        return {"apps": apps}, problems


class BlockedAppsForm(PolicyForm):
    policy_type = PolicyType.BLOCKED_APPS
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

    def parse(self, cleaned):
        apps, problems = [], []
        hint = "write 'name', 'name < 2.0', 'name >= 1.0' or 'name >= 1.0 < 2.0'."
        for n, line, m in _match_lines(cleaned.get("apps"), BLOCKED_LINE, hint, problems):
            app = {"pattern": m["pattern"], "min_version": m["min"], "below_version": m["below"]}
            if self.check_entry(n, line, {"apps": [app]}, problems):
                apps.append(app)
        return {"apps": apps}, problems


class UpdateRulesForm(PolicyForm):
    policy_type = PolicyType.UPDATE_RULES
    rule_fields = ("os_deadline_hours", "app_deadlines")
    rules_field = "app_deadlines"
    rule_paths = {"os_deadline_hours": "os_deadline_hours", "apps": "app_deadlines"}
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
        help_text="One per line: 'app-name: hours', e.g. 'nginx: 48'; '*: 72' for every other app, newly installed ones "
        "too. The clock starts at the oldest pending release.",
    )

    def rules_initial(self, rules):
        return {
            "os_deadline_hours": rules.get("os_deadline_hours"),
            "app_deadlines": "\n".join(f"{a['name']}: {a['deadline_hours']}" for a in rules.get("apps", [])),
        }

    def parse(self, cleaned):
        apps, problems = [], []
        hint = "write 'app-name: hours', e.g. 'nginx: 48'."
        for n, line, m in _match_lines(cleaned.get("app_deadlines"), DEADLINE_LINE, hint, problems):
            app = {"name": m["name"], "deadline_hours": int(m["hours"])}
            if self.check_entry(n, line, {"apps": [app]}, problems):
                apps.append(app)
        return {"os_deadline_hours": cleaned.get("os_deadline_hours"), "apps": apps}, problems


class BaselineForm(PolicyForm):
    policy_type = PolicyType.BASELINE
    rule_fields = ("os_version", "os_match", "settings")
    rules_field = "settings"
    rule_paths = {"os_version": "os_version", "os_match": "os_match", "settings": "settings"}
    os_version = forms.CharField(
        label="OS version", required=False, max_length=64, help_text="E.g. 24.04.2. Empty: no OS rule."
    )
    os_match = forms.ChoiceField(label="OS match", choices=OsMatch.choices, initial=OsMatch.EXACT)
    settings = forms.CharField(
        label="Settings",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono"}),
        help_text="One per line: 'key = expected value', e.g. 'ssh.password_auth = false'. true/false and numbers are typed.",
    )

    def rules_initial(self, rules):
        return {
            "os_version": rules.get("os_version") or "",
            "os_match": rules.get("os_match") or OsMatch.EXACT,
            "settings": "\n".join(
                f"{k} = {json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in (rules.get("settings") or {}).items()
            ),
        }

    def parse(self, cleaned):
        values, problems = {}, []
        hint = "write 'key = value', e.g. 'ssh.password_auth = false'."
        for n, line, m in _match_lines(cleaned.get("settings"), SETTING_LINE, hint, problems):
            if m["key"] in values:
                problems.append(f"Line {n}: '{m['key']}' is set twice.")
                continue
            value = _parse_value(m["value"].strip())
            if self.check_entry(n, line, {"settings": {m["key"]: value}}, problems):
                values[m["key"]] = value
        rules = {
            "os_version": cleaned.get("os_version") or None,
            "os_match": cleaned.get("os_match"),
            "settings": values,
        }
        return rules, problems


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


class PolicyImportForm(forms.Form):
    """Policy files to import: an uploaded .yaml or .zip, or YAML pasted (the upload wins)."""

    # Classes set here: the import view renders the form itself (no style_form).
    upload = forms.FileField(
        label="Upload",
        required=False,
        help_text="A policy file, the export's YAML, or a zip of policies/*.yaml.",
        widget=forms.ClearableFileInput(attrs={"class": "form-control"}),
    )
    text = forms.CharField(
        label="Or paste YAML",
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "class": "form-control mono", "spellcheck": "false"}),
    )
    # The zip of the previewed upload, carried to the Apply step (base64).
    zip_base64 = forms.CharField(required=False, widget=forms.HiddenInput)
    prune = forms.BooleanField(
        label="Disable the policies that are not in the import",
        required=False,
        help_text="Git-owned ones are kept.",
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )

    MAX_BYTES = 10 * 1024 * 1024

    def clean(self):
        data = super().clean()
        upload = data.get("upload")
        if upload is not None:
            if upload.size > self.MAX_BYTES:
                raise forms.ValidationError("The upload is larger than 10 MB.")
            content = upload.read()
            if content[:2] == b"PK":
                data["zip_base64"] = base64.b64encode(content).decode()
                data["text"] = ""
            else:
                data["text"], data["zip_base64"] = content.decode("utf-8", errors="replace"), ""
            data["filename"] = upload.name
        if not (data.get("text") or "").strip() and not data.get("zip_base64"):
            raise forms.ValidationError("Upload a file or paste the policies' YAML.")
        return data
