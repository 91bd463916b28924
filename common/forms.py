from django import forms
from django.contrib.auth.password_validation import validate_password

from .choices import Role
from .models import User


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    password = forms.CharField(widget=forms.PasswordInput, help_text="At least 8 characters, not a common password")

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(f"A user named '{username}' already exists.")
        return username

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password"):
            candidate = User(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                validate_password(cleaned["password"], candidate)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class UserUpdateForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
    is_active = forms.BooleanField(label="Active (may sign in)", required=False)

    def __init__(self, *args, user: User, actor: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.user, self.actor = user, actor  # the rules (no self-lockout, a last admin) are user_update's


def style_form(form, *, small: bool = False):
    """Give every widget its Bootstrap class, so templates can render fields plainly."""
    if form is None or getattr(form, "_styled", False):
        return form
    size = "-sm" if small else ""
    invalid = set(form.errors) if form.is_bound else set()  # errors are known by the time a page renders
    for name, field in form.fields.items():
        widget = field.widget
        input_type = getattr(widget, "input_type", None)
        if input_type == "radio" or isinstance(widget, forms.CheckboxSelectMultiple):
            continue  # Django puts a widget's class on the group's container too; app.css styles them
        if input_type == "checkbox":
            css = "form-check-input"
        elif isinstance(widget, forms.Select | forms.SelectMultiple) and not isinstance(widget, forms.RadioSelect):
            css = f"form-select form-select{size}" if small else "form-select"
        else:
            css = f"form-control form-control{size}" if small else "form-control"
        if name in invalid:
            css += " is-invalid"
        existing = widget.attrs.get("class", "")
        widget.attrs["class"] = f"{existing} {css}".strip()
    form._styled = True
    return form
