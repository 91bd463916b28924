from django import forms

from common.exceptions import ApplicationError

from .choices import ScopeKind
from .models import Group, Instance
from .services import scope_from_input


class ScopeFormMixin(forms.Form):
    """The target picker shared by policies, commands, canaries and config entries.

    Use `form.cleaned_data["scope"]` (a fleet.scopes.Scope) after validation.
    """

    scope_kind = forms.ChoiceField(label="Scope", choices=ScopeKind.choices, initial=ScopeKind.ALL, widget=forms.RadioSelect)
    scope_groups = forms.ModelMultipleChoiceField(label="Groups", queryset=Group.objects.all(), required=False)
    scope_tags = forms.CharField(
        label="Tag filter", required=False, help_text="key=value pairs, comma separated; all must match",
        widget=forms.TextInput(attrs={"placeholder": "env=production, role=web"}),
    )
    scope_instances = forms.ModelMultipleChoiceField(
        label="Instances", queryset=Instance.objects.all(), required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
    )

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("scope_kind")
        if kind:
            try:
                cleaned["scope"] = scope_from_input(
                    kind=kind, groups=cleaned.get("scope_groups") or (), tags=cleaned.get("scope_tags") or "",
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
