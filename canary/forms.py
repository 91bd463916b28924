from django import forms

from fleet.choices import CommandType
from fleet.forms import ScopeFormMixin
from fleet.models import Instance

from .choices import Criterion, PreflightPolicy, SelectionKind


class CanaryForm(ScopeFormMixin):
    """Create a canary deployment. The change is a command of the queue with its parameters."""

    name = forms.CharField(max_length=120, required=False, help_text="Optional, e.g. “nginx 1.27 to production”")
    command_kind = forms.ChoiceField(label="Change", choices=CommandType.choices, initial=CommandType.UPDATE_APP)
    app = forms.CharField(required=False, help_text="For app commands, e.g. web-app")
    version = forms.CharField(required=False, help_text="For update/install app and update OS, e.g. 2.4.1")
    config_values = forms.CharField(
        label="Configuration",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For set_config: one key=value per line",
    )
    selection = forms.ChoiceField(
        choices=SelectionKind.choices, initial=SelectionKind.PERCENTAGE, widget=forms.RadioSelect
    )
    canary_percentage = forms.IntegerField(
        label="Canary percentage", min_value=1, max_value=100, initial=10, required=False
    )
    canary_instances = forms.ModelMultipleChoiceField(
        queryset=Instance.objects.all(), required=False, widget=forms.SelectMultiple(attrs={"size": 6})
    )
    criteria = forms.MultipleChoiceField(
        label="Success criteria (every chosen one must hold)",
        choices=Criterion.choices,
        initial=[Criterion.ONLINE, Criterion.HEALTH_CHECK],
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
    )
    success_threshold = forms.IntegerField(label="Success threshold (%)", min_value=1, max_value=100, initial=100)
    health_path = forms.CharField(label="Health check URL", initial="/health", max_length=200)
    check_interval = forms.IntegerField(label="Check interval (seconds)", min_value=1, max_value=3600, initial=30)
    max_duration = forms.IntegerField(label="Max duration (seconds)", min_value=1, initial=600)
    consecutive_healthy = forms.IntegerField(
        label="Consecutive healthy polls required",
        min_value=1,
        max_value=100,
        initial=1,
        help_text="How many rounds in a row an instance must pass before it counts as healthy",
    )
    preflight_policy = forms.ChoiceField(
        label="Pre-flight", choices=PreflightPolicy.choices, initial=PreflightPolicy.EXCLUDE, widget=forms.RadioSelect
    )

    def __init__(self, *args, unavailable: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.unavailable = unavailable or {}
        if Criterion.NO_NEW_VIOLATIONS in self.unavailable:
            self.fields[
                "criteria"
            ].help_text = f"“No new violations” is unavailable: {self.unavailable[Criterion.NO_NEW_VIOLATIONS]}."

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("command_kind")
        params = {}
        if kind in ("install_app", "uninstall_app", "update_app", "start_app", "stop_app", "restart_app"):
            params["app"] = (cleaned.get("app") or "").strip()
        if kind in ("install_app", "update_app", "update_os") and cleaned.get("version"):
            params["version"] = cleaned["version"].strip()
        if kind == "set_config":
            values = {}
            for line in (cleaned.get("config_values") or "").splitlines():
                if line.strip():
                    key, sep, value = line.partition("=")
                    if not sep:
                        self.add_error("config_values", f"'{line}' is not key=value")
                        continue
                    values[key.strip()] = value.strip()
            params["values"] = values
        cleaned["params"] = params
        selection = cleaned.get("selection")
        if selection == SelectionKind.PERCENTAGE and not cleaned.get("canary_percentage"):
            self.add_error("canary_percentage", "Enter the percentage of the scope to use as the canary.")
        if selection == SelectionKind.INSTANCES and not cleaned.get("canary_instances"):
            self.add_error("canary_instances", "Choose at least one canary instance.")
        for criterion in cleaned.get("criteria") or ():
            if criterion in self.unavailable:
                self.add_error(
                    "criteria", f"{Criterion(criterion).label} is unavailable: {self.unavailable[criterion]}."
                )
        return cleaned

    def service_kwargs(self) -> dict:
        c = self.cleaned_data
        return {
            "name": c.get("name") or "",
            "kind": c["command_kind"],
            "params": c["params"],
            "scope": c["scope"],
            "selection": c["selection"],
            "percentage": c.get("canary_percentage"),
            "instances": list(c.get("canary_instances") or ()),
            "criteria": c["criteria"],
            "success_threshold": c["success_threshold"],
            "health_path": c["health_path"],
            "check_interval": c["check_interval"],
            "max_duration": c["max_duration"],
            "consecutive_healthy": c["consecutive_healthy"],
            "preflight_policy": c["preflight_policy"],
        }


class RollbackForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)
