from django import forms

from fleet.choices import CommandType
from fleet.forms import ScopeFormMixin
from fleet.models import Instance

from .choices import Criterion, MissingAppPolicy, PreflightPolicy, SelectionKind

# Service errors come keyed by the API's field paths; these are the form fields that show them.
FIELD_FOR_PATH = {
    "change.kind": "command_kind",
    "change.params.app": "app",
    "change.params.version": "version",
    "change.params.values": "config_values",
    "change.params": "config_values",
    "canary": "selection",
    "canary.percentage": "canary_percentage",
    "canary.instances": "canary_instances",
    "scope": "scope_kind",
}


def form_errors(errors: dict) -> dict:
    """API paths → this form's fields; `steps[i]…` lands on the further steps (step 1 is the canary group)."""
    out: dict[str, list[str]] = {}
    for path, messages in errors.items():
        if path.startswith("steps["):
            index = int(path[6 : path.index("]")])
            field = (
                "canary_percentage"
                if index == 0
                else ("approve_steps" if path.endswith("approval") else "further_steps")
            )
            messages = [f"step {index + 1}: {m}" if index else m for m in messages]
        else:
            field = FIELD_FOR_PATH.get(path, path)
        out.setdefault(field, []).extend(messages)
    return out


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
    canary_percentage = forms.IntegerField(label="Canary percentage", initial=10, required=False)
    canary_instances = forms.ModelMultipleChoiceField(
        queryset=Instance.objects.all(), required=False, widget=forms.SelectMultiple(attrs={"size": 6})
    )
    further_steps = forms.CharField(
        label="Further steps (% of the scope)",
        required=False,
        help_text="Optional, e.g. “25, 50”: after the canary, the change goes to 25 %, then 50 % of the scope, "
        "each step evaluated like the canary, then to the rest",
    )
    approve_steps = forms.BooleanField(
        label="Wait for my approval after each step",
        required=False,
        help_text="Approve each next step on the deployment's page",
    )
    max_unavailable = forms.IntegerField(
        label="At most this many changing at once", required=False, help_text="Empty: no limit"
    )
    missing_app = forms.ChoiceField(
        label="Instances that lack the app",
        choices=MissingAppPolicy.choices,
        initial=MissingAppPolicy.EXCLUDE,
        widget=forms.RadioSelect,
    )
    criteria = forms.MultipleChoiceField(
        label="Success criteria (every chosen one must hold)",
        choices=Criterion.choices,
        initial=[Criterion.ONLINE, Criterion.HEALTH_CHECK],
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
    )
    success_threshold = forms.IntegerField(label="Success threshold (%)", initial=100)
    health_check_url = forms.CharField(label="Health check URL", initial="/health", max_length=200)
    check_interval = forms.IntegerField(label="Check interval (seconds)", initial=30)
    max_duration = forms.IntegerField(label="Max duration (seconds)", initial=600)
    consecutive_healthy_polls = forms.IntegerField(
        label="Consecutive healthy polls required",
        initial=1,
        help_text="How many rounds in a row an instance must pass before it counts as healthy",
    )
    preflight = forms.ChoiceField(
        label="Pre-flight", choices=PreflightPolicy.choices, initial=PreflightPolicy.EXCLUDE, widget=forms.RadioSelect
    )

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
        further = []
        for part in (cleaned.get("further_steps") or "").replace("%", "").split(","):
            if part.strip():
                if not part.strip().isdecimal():
                    self.add_error("further_steps", f"'{part.strip()}' is not a percentage: write e.g. 25, 50")
                    continue
                further.append(int(part))
        cleaned["further"] = further
        return cleaned

    def steps(self) -> list[dict] | None:
        """The steps for the service: the canary group, then each further percentage (None: no steps)."""
        c = self.cleaned_data
        if not c["further"] and not c.get("approve_steps"):
            return None
        if c["selection"] == SelectionKind.INSTANCES:
            first = {"instances": list(c.get("canary_instances") or ())}
        else:
            first = {"percentage": c.get("canary_percentage")}
        steps = [first] + [{"percentage": p} for p in c["further"]]
        for step in steps:
            step["approval"] = bool(c.get("approve_steps")) and step.get("percentage") != 100
        return steps

    def service_kwargs(self) -> dict:
        c = self.cleaned_data
        steps = self.steps()
        return {
            "name": c.get("name") or "",
            "kind": c["command_kind"],
            "params": c["params"],
            "scope": c["scope"],
            "selection": c["selection"],
            "percentage": None if steps else c.get("canary_percentage"),
            "instances": [] if steps else list(c.get("canary_instances") or ()),
            "steps": steps,
            "criteria": c["criteria"],
            "success_threshold": c["success_threshold"],
            "health_path": c["health_check_url"],
            "check_interval": c["check_interval"],
            "max_duration": c["max_duration"],
            "consecutive_healthy": c["consecutive_healthy_polls"],
            "preflight_policy": c["preflight"],
            "missing_app_policy": c["missing_app"],
            "max_unavailable": c.get("max_unavailable"),
        }


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)
