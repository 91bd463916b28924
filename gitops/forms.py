from django import forms

from common.validators import validate_git_ref
from fleet.models import Group, Instance

from .choices import AuthMethod, ConflictStrategy, DisconnectMode, Level, Resolution
from .repoformat import parse_value_text
from .services.repositories import MAX_INTERVAL, MIN_INTERVAL, validate_path, validate_revision, validate_url


def _branch():
    return forms.CharField(
        max_length=255,
        initial="main",
        validators=[validate_git_ref],
        widget=forms.TextInput(attrs={"class": "form-control"}),
    )


def _path():
    return forms.CharField(
        label="Directory (optional)",
        max_length=255,
        required=False,
        validators=[validate_path],
        help_text="A sub-directory holding fleet.yaml, groups/, tags/ and instances/, e.g. clusters/prod",
        widget=forms.TextInput(attrs={"class": "form-control mono", "placeholder": "(the top level)"}),
    )


def _revision():
    return forms.CharField(
        label="Pinned revision (optional)",
        max_length=255,
        required=False,
        validators=[validate_revision],
        help_text="A tag or commit SHA to stay on; empty follows the branch head",
        widget=forms.TextInput(attrs={"class": "form-control mono"}),
    )


def _prune():
    return forms.BooleanField(
        label="Prune: unset on instances the setting keys removed from Git",
        required=False,
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )


def _interval(**kwargs):
    return forms.IntegerField(
        label="Sync interval (seconds)",
        min_value=MIN_INTERVAL,
        max_value=MAX_INTERVAL,
        widget=forms.NumberInput(attrs={"class": "form-control"}),
        **kwargs,
    )


class ConnectForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"class": "form-control"}))
    url = forms.CharField(
        label="Repository URL",
        max_length=500,
        validators=[validate_url],
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
        max_length=20000,
        help_text="Paste the server's known_hosts line (it must name the repository's host; ssh-keyscan prints it) "
        "to pin it now; leave empty and a worker fetches the host key for you to confirm.",
        widget=forms.Textarea(
            attrs={"class": "form-control mono", "rows": 2, "placeholder": "github.com ssh-ed25519 AAAAC3Nza…"}
        ),
    )
    branch = _branch()
    path = _path()
    revision = _revision()
    prune = _prune()
    sync_interval = _interval(initial=300)
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
    branch = _branch()
    path = _path()
    revision = _revision()
    prune = _prune()
    sync_interval = _interval()
    conflict_strategy = forms.ChoiceField(
        choices=ConflictStrategy.choices, widget=forms.Select(attrs={"class": "form-select"})
    )


class SyncToRevisionForm(forms.Form):
    revision = forms.CharField(
        max_length=255,
        validators=[validate_revision],
        help_text="A tag, or a commit SHA of the branch (7 to 40 hex digits). The repository stays pinned there.",
        widget=forms.TextInput(attrs={"class": "form-control mono", "placeholder": "v1.4 or 3f2a9c1"}),
    )


class DisconnectForm(forms.Form):
    entries = forms.ChoiceField(
        label="Its desired-configuration entries",
        choices=DisconnectMode.choices,
        initial=DisconnectMode.KEEP,
        widget=forms.RadioSelect,
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
