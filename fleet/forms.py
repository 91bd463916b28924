import re

from django import forms
from django.conf import settings

from common.exceptions import ApplicationError
from common.net import validate_address
from common.validators import validate_datetime_range

from .choices import CommandType, ScopeKind
from .models import Group, Instance
from .scopes import ScopeError, parse_tag_filter
from .services import scope_from_input


class IdMultipleChoiceField(forms.ModelMultipleChoiceField):
    """ModelMultipleChoiceField whose ids must be whole numbers within 64 bits: Django looks them up with
    `pk__in`, which sends a larger one to the database (an overflow, not a form error)."""

    def _check_values(self, value):
        for pk in value:
            text = str(pk)
            if not text.isdecimal() or not 0 < int(text) < 2**63:
                raise forms.ValidationError(
                    self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": text[:30]}
                )
        return super()._check_values(value)


class ScopeFormMixin(forms.Form):
    """The target picker shared by policies, commands, canaries and config entries.

    Use `form.cleaned_data["scope"]` (a fleet.scopes.Scope) after validation.
    """

    scope_kind = forms.ChoiceField(
        label="Scope", choices=ScopeKind.choices, initial=ScopeKind.ALL, widget=forms.RadioSelect
    )
    scope_groups = IdMultipleChoiceField(label="Groups", queryset=Group.objects.all(), required=False)
    scope_tags = forms.CharField(
        label="Tag filter",
        required=False,
        max_length=1000,
        help_text="key=value pairs, comma separated; all must match",
        widget=forms.TextInput(attrs={"placeholder": "env=production, role=web"}),
    )
    scope_instances = IdMultipleChoiceField(
        label="Instances",
        queryset=Instance.objects.all(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
    )

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("scope_kind")
        if kind and not any(name in self.errors for name in ("scope_groups", "scope_tags", "scope_instances")):
            try:
                cleaned["scope"] = scope_from_input(
                    kind=kind,
                    groups=cleaned.get("scope_groups") or (),
                    tags=cleaned.get("scope_tags") or "",
                    instances=cleaned.get("scope_instances") or (),
                )
            except ApplicationError as exc:
                field = {"groups": "scope_groups", "tags": "scope_tags", "instances": "scope_instances"}.get(kind)
                self.add_error(field, exc.message)
        return cleaned

    @staticmethod
    def scope_initial(obj) -> dict:
        """Initial form values from a saved ScopedModel."""
        return {
            "scope_kind": obj.scope_kind,
            "scope_groups": list(obj.scope_groups.all()),
            "scope_tags": ", ".join(obj.scope_tags),
            "scope_instances": list(obj.scope_instances.all()),
        }


# --- Page forms --------------------------------------------------------------------------------
# Forms only shape and check input; every write goes through fleet.services.


def _parse_setting_value(text: str):
    """`true`/`false` become booleans and whole numbers integers; anything else stays text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d{1,18}", text):
        return int(text)
    return text


class InstanceEditForm(forms.Form):
    address = forms.CharField(
        label="Health address",
        required=False,
        max_length=255,
        validators=[validate_address],
        help_text="host[:port] the panel polls for health checks (no scheme, user or path)",
    )
    groups = IdMultipleChoiceField(
        queryset=Group.objects.all(), required=False, widget=forms.SelectMultiple(attrs={"size": 6})
    )
    tags = forms.CharField(
        required=False,
        help_text="key=value pairs, comma separated",
        widget=forms.TextInput(attrs={"placeholder": "env=production, role=web"}),
    )

    def clean_tags(self):
        try:
            return parse_tag_filter(self.cleaned_data["tags"])
        except ScopeError as exc:
            raise forms.ValidationError(str(exc)) from exc


class GroupForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class RegistrationTokenForm(forms.Form):
    ONE_TIME, MULTI_USE = "one_time", "multi_use"

    name = forms.CharField(max_length=100, help_text='What the token is for, e.g. "web rollout March"')
    usage = forms.ChoiceField(
        label="Usage",
        choices=[(ONE_TIME, "One-time (a single registration)"), (MULTI_USE, "Multi-use")],
        initial=ONE_TIME,
        widget=forms.RadioSelect,
    )
    max_uses = forms.IntegerField(
        label="Usage limit", required=False, min_value=1, help_text="Multi-use only; empty for unlimited"
    )
    expires_at = forms.DateTimeField(
        label="Expires",
        required=False,
        help_text=f"In the panel's time zone ({settings.TIME_ZONE}); empty for no expiry",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        validators=[validate_datetime_range],
    )
    groups = IdMultipleChoiceField(
        label="Groups to assign",
        queryset=Group.objects.all(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 5}),
    )
    tags = forms.CharField(
        label="Tags to assign",
        required=False,
        help_text="key=value pairs, comma separated",
        widget=forms.TextInput(attrs={"placeholder": "env=production"}),
    )

    def clean_tags(self):
        try:
            return parse_tag_filter(self.cleaned_data["tags"])
        except ScopeError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("usage") == self.ONE_TIME:
            if cleaned.get("max_uses") not in (None, 1):
                self.add_error("max_uses", "A one-time token is used once; choose multi-use for a higher limit.")
            cleaned["max_uses"] = 1
        return cleaned


COMMAND_PARAM_FIELDS = {
    "app": [k for k in CommandType.values if k.endswith("_app")],
    "version": [CommandType.INSTALL_APP, CommandType.UPDATE_APP, CommandType.UPDATE_OS],
    "config_values": [CommandType.SET_CONFIG],
    "config_unset": [CommandType.SET_CONFIG],
}


class CommandForm(ScopeFormMixin):
    """New command: type, the parameters that type takes, and the target."""

    kind = forms.ChoiceField(label="Command", choices=CommandType.choices)
    app = forms.CharField(
        label="App", required=False, widget=forms.TextInput(attrs={"placeholder": "monitoring-agent"})
    )
    version = forms.CharField(
        label="Version",
        required=False,
        help_text="Optional for install; required for app and OS updates",
        widget=forms.TextInput(attrs={"placeholder": "1.4.2"}),
    )
    config_values = forms.CharField(
        label="Settings to set",
        required=False,
        help_text="One key=value per line; true/false become booleans, whole numbers integers",
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "ssh.password_auth=false\nntp.server=pool.ntp.org"}),
    )
    config_unset = forms.CharField(
        label="Settings to remove",
        required=False,
        help_text="One key per line",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "legacy.option"}),
    )
    description = forms.CharField(label="Note", required=False, max_length=200)

    field_order = ["kind", "app", "version", "config_values", "config_unset", "description"]
    # The command queue's parameter paths (fleet.commands.CommandParamsError.path) → the inputs.
    service_fields = {
        "params.app": "app",
        "params.version": "version",
        "params.values": "config_values",
        "params.unset": "config_unset",
    }

    def clean_config_values(self):
        values = {}
        for number, line in enumerate(self.cleaned_data["config_values"].splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number} ('{line}') is not key=value.")
            values[key.strip()] = _parse_setting_value(value.strip())
        return values

    def clean_config_unset(self):
        return [line.strip() for line in self.cleaned_data["config_unset"].splitlines() if line.strip()]

    def command_params(self) -> dict:
        """The parameters for the chosen type, as fleet.commands.validate_params takes them."""
        data, kind = self.cleaned_data, self.cleaned_data["kind"]
        if kind == CommandType.SET_CONFIG:
            return {"values": data.get("config_values") or {}, "unset": data.get("config_unset") or []}
        params = {}
        if kind in COMMAND_PARAM_FIELDS["app"]:
            params["app"] = data.get("app", "").strip()
        if kind in COMMAND_PARAM_FIELDS["version"] and data.get("version", "").strip():
            params["version"] = data["version"].strip()
        return params


class ScopeForm(ScopeFormMixin):
    """Just the target picker: the live preview of which instances a target matches."""


class LicenseUploadForm(forms.Form):
    text = forms.CharField(
        label="License text",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
        help_text="Paste the license, or choose the license file below",
    )
    file = forms.FileField(label="License file", required=False)

    MAX_FILE_BYTES = 64 * 1024

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload:
            if upload.size > self.MAX_FILE_BYTES:
                raise forms.ValidationError("That file is too large to be a license (more than 64 KB).")
            try:
                cleaned["text"] = upload.read().decode("ascii")
            except UnicodeDecodeError as exc:
                raise forms.ValidationError("That file is not a license: it is not plain text.") from exc
        if not (cleaned.get("text") or "").strip():
            raise forms.ValidationError("Paste the license text or choose a license file.")
        return cleaned


class TagForm(forms.Form):
    tag = forms.CharField(
        max_length=193, help_text="key=value, e.g. env=production (letters, digits, '.', '-', '_', '/')"
    )
