from django import forms

from fleet.models import Group, Instance

from .choices import AuthMethod, ConflictStrategy, Level, Resolution
from .repoformat import parse_value_text


class ConnectForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"class": "form-control"}))
    url = forms.CharField(
        label="Repository URL",
        max_length=500,
        help_text="ssh://git@host:22/org/fleet-config.git or git@host:org/fleet-config.git",
        widget=forms.TextInput(
            attrs={"class": "form-control", "placeholder": "git@github.com:example/fleet-config.git"}
        ),
    )
    auth_method = forms.ChoiceField(
        label="Authentication", choices=AuthMethod.choices, initial=AuthMethod.GENERATED, widget=forms.RadioSelect
    )
    private_key = forms.CharField(
        label="Private key",
        required=False,
        strip=False,
        help_text="Only for 'Uploaded private key': an unencrypted OpenSSH or PEM key. Stored encrypted, never shown again.",
        widget=forms.Textarea(attrs={"class": "form-control mono", "rows": 5, "autocomplete": "off"}),
    )
    known_hosts = forms.CharField(
        label="Host key (optional)",
        required=False,
        help_text="Paste the server's known_hosts line to pin it now; leave empty and the panel fetches the host key for you to confirm.",
        widget=forms.TextInput(
            attrs={"class": "form-control mono", "placeholder": "github.com ssh-ed25519 AAAAC3Nza…"}
        ),
    )
    branch = forms.CharField(max_length=200, initial="main", widget=forms.TextInput(attrs={"class": "form-control"}))
    sync_interval = forms.IntegerField(
        label="Sync interval (seconds)",
        min_value=30,
        initial=300,
        widget=forms.NumberInput(attrs={"class": "form-control"}),
    )
    conflict_strategy = forms.ChoiceField(
        choices=ConflictStrategy.choices,
        initial=ConflictStrategy.MANUAL,
        widget=forms.Select(attrs={"class": "form-select"}),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("auth_method") == AuthMethod.UPLOADED and not (cleaned.get("private_key") or "").strip():
            self.add_error("private_key", "Paste the private key to upload, or choose to generate a key pair.")
        return cleaned


class RepositorySettingsForm(forms.Form):
    branch = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"class": "form-control"}))
    sync_interval = forms.IntegerField(
        label="Sync interval (seconds)", min_value=30, widget=forms.NumberInput(attrs={"class": "form-control"})
    )
    conflict_strategy = forms.ChoiceField(
        choices=ConflictStrategy.choices, widget=forms.Select(attrs={"class": "form-select"})
    )


class HostKeyConfirmForm(forms.Form):
    fingerprint = forms.CharField(widget=forms.HiddenInput)


class ConflictResolveForm(forms.Form):
    resolution = forms.ChoiceField(choices=Resolution.choices)
    value = forms.CharField(required=False, help_text="For 'Use another value': YAML, e.g. false, 22, \"1.4.2\"")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("resolution") == Resolution.CUSTOM:
            try:
                cleaned["parsed_value"] = parse_value_text(cleaned.get("value") or "")
            except ValueError as exc:
                self.add_error("value", str(exc))
        return cleaned


class DesiredEntryForm(forms.Form):
    level = forms.ChoiceField(choices=Level.choices, widget=forms.Select(attrs={"class": "form-select"}))
    target = forms.CharField(
        required=False,
        help_text="Group name, key=value tag or instance name (empty for fleet)",
        widget=forms.TextInput(attrs={"class": "form-control", "list": "gitops-targets"}),
    )
    key = forms.CharField(
        max_length=200,
        help_text="A setting such as ssh.password_auth, or app:<name> for a desired app",
        widget=forms.TextInput(attrs={"class": "form-control mono"}),
    )
    value = forms.CharField(
        required=False,
        help_text='YAML: false, 22, "text"; an app version such as 1.4.2 or absent; null unsets a setting',
        widget=forms.TextInput(attrs={"class": "form-control mono"}),
    )

    def clean(self):
        cleaned = super().clean()
        key = (cleaned.get("key") or "").strip()
        text = cleaned.get("value") or ""
        try:
            # App versions are text even when they look like numbers (1.4).
            cleaned["parsed_value"] = text.strip() if key.startswith("app:") else parse_value_text(text)
        except ValueError as exc:
            self.add_error("value", str(exc))
        return cleaned

    @staticmethod
    def target_suggestions() -> list[str]:
        return [*Group.objects.values_list("name", flat=True), *Instance.objects.values_list("name", flat=True)[:500]]
