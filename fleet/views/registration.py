"""Registration tokens and the license (Settings)."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views.generic import FormView, ListView

from common.choices import Role
from common.tables import TableListMixin
from common.views import RoleRequiredMixin, ServiceActionView, ServiceFormMixin
from fleet import selectors, services
from fleet.forms import LicenseUploadForm, RegistrationTokenForm
from fleet.licensing import FEATURES
from fleet.licensing_store import current_license_status
from fleet.models import Instance, License, RegistrationToken
from fleet.tables import TokenTable

# --- Registration tokens -----------------------------------------------------------------------


class TokenListView(TableListMixin, RoleRequiredMixin, ListView):
    template_name = "fleet/token_list.html"
    table_class = TokenTable
    sort_fields = {"name": "name", "uses": "use_count", "expires": "expires_at", "created": "created"}
    context_object_name = "tokens"
    paginate_by = 50

    def get_queryset(self):
        return self.sorted(selectors.registration_token_list())


class TokenCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "fleet/token_form.html"
    form_class = RegistrationTokenForm

    def perform(self, form):
        data = form.cleaned_data
        token, plaintext = services.registration_token_create(
            actor=self.request.user,
            name=data["name"],
            max_uses=data["max_uses"],
            expires_at=data["expires_at"],
            groups=list(data["groups"]),
            tags=data["tags"],
        )
        messages.success(self.request, f"Registration token {token.name} created. Copy it now: it is not shown again.")
        # The plaintext exists only in this response: never stored, never in a URL, not cached.
        context = {
            "token": token,
            "plaintext": plaintext,
            "panel_url": self.request.build_absolute_uri("/").rstrip("/"),
            "register_url": self.request.build_absolute_uri(reverse("agent:register")),
        }
        response = render(self.request, "fleet/token_created.html", context)
        response["Cache-Control"] = "no-store"
        return response


class TokenDetailView(RoleRequiredMixin, ListView):
    """A token and its usage history: every registration attempt, accepted or rejected."""

    template_name = "fleet/token_detail.html"
    context_object_name = "uses"
    paginate_by = 50

    def get_queryset(self):
        self.token = get_object_or_404(selectors.registration_token_list(), pk=self.kwargs["pk"])
        return self.token.uses.select_related("instance")

    def get_context_data(self, **kwargs):
        return super().get_context_data(token=self.token, **kwargs)


class TokenRevokeView(ServiceActionView):
    model = RegistrationToken
    confirm_title = "Revoke registration token"
    confirm_text = (
        "Revoke {obj.name}? Agents can no longer register with it. Servers that already registered keep working."
    )
    confirm_button = "Revoke token"

    def act(self, obj):
        services.registration_token_revoke(actor=self.request.user, token=obj)
        return f"Registration token {obj.name} revoked."


# --- Settings: license -----------------------------------------------------------


class LicenseView(RoleRequiredMixin, ServiceFormMixin, FormView):
    template_name = "fleet/license.html"
    form_class = LicenseUploadForm
    success_url = reverse_lazy("fleet:license")

    def get_context_data(self, **kwargs):
        status = current_license_status()
        limits = dict(status.info.limits) if status.info else {}
        return super().get_context_data(
            status=status,
            limits=limits,
            features=[(name, FEATURES[name], allowed) for name, allowed in status.features.items()],
            instance_count=Instance.objects.count(),
            history=License.objects.select_related("uploaded_by")[:20],
            **kwargs,
        )

    def perform(self, form):
        record = services.license_upload(actor=self.request.user, text=form.cleaned_data["text"])
        messages.success(
            self.request,
            f"License installed: {record.plan.title()} plan for {record.customer or 'unnamed customer'}, "
            f"valid until {record.expires_at:%Y-%m-%d}.",
        )
        return redirect(self.success_url)
