"""The policy's Mode + Remediation form: the same fields as the API's /policies/{id}/remediation; the
service validates (its messages land on these fields)."""

from django import forms

from canary.choices import Criterion

from ..choices import PolicyMode

WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]
NO_LIMIT = "Empty: no limit."


class RemediationForm(forms.Form):
    mode = forms.ChoiceField(
        choices=PolicyMode.choices,
        help_text="Enforce: each open violation gets its fix queued through the command queue, within the rails below.",
    )
    max_instances = forms.IntegerField(required=False, label="At most N instances at once", help_text=NO_LIMIT)
    max_percent = forms.IntegerField(required=False, label="At most P % of the scope at once", help_text=NO_LIMIT)
    max_per_hour = forms.IntegerField(required=False, label="At most M instances started per hour", help_text=NO_LIMIT)
    window_days = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Days",
        help_text="None ticked: every day.",
    )
    window_start = forms.TimeField(required=False, label="From", help_text="Empty (both): all day.")
    window_end = forms.TimeField(required=False, label="Until", help_text="Before 'From': the window crosses midnight.")
    window_timezone = forms.CharField(initial="UTC", label="Time zone", help_text="e.g. Europe/Berlin")
    max_attempts = forms.IntegerField(label="At most K attempts per violation")
    backoff_seconds = forms.IntegerField(label="Backoff (seconds)", help_text="Doubles after each failed attempt.")
    breaker_percent = forms.IntegerField(
        label="Pause when more than X % failed in the last hour",
        help_text="The circuit breaker; the admins are notified.",
    )
    breaker_min_attempts = forms.IntegerField(label="… of at least this many finished attempts")
    use_canary = forms.BooleanField(required=False, label="Through a canary deployment")
    canary_percentage = forms.IntegerField(label="Canary: % of the instances first")
    canary_criteria = forms.MultipleChoiceField(
        choices=Criterion.choices, required=False, widget=forms.CheckboxSelectMultiple, label="Canary: success criteria"
    )
    canary_check_interval = forms.IntegerField(label="Canary: check interval (s)")
    canary_max_duration = forms.IntegerField(label="Canary: max duration (s)")

    def data_for_service(self) -> dict:
        return dict(self.cleaned_data)


class RailsForm(RemediationForm):
    """The rails alone, embedded in the policy form (prefix `rails`), whose own Mode field chooses enforce."""

    mode = None

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "rails")
        super().__init__(*args, **kwargs)
