"""Exceptions: create and revoke (the list is in lists.py)."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.views import View
from django.views.generic import FormView

from common.choices import Role
from common.exceptions import ApplicationError
from common.validators import parse_id
from common.views import RoleRequiredMixin, ServiceFormMixin
from fleet.models import Instance

from .. import selectors, services
from ..forms import ExceptionForm
from ..models import PolicyException


class ExceptionCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "governance/exception_form.html"
    form_class = ExceptionForm

    def get_initial(self):
        initial = super().get_initial()
        for key in ("policy", "rule_key"):
            if self.request.GET.get(key):
                initial[key] = self.request.GET[key]
        if instance_id := parse_id(self.request.GET.get("instance")):
            instance = Instance.objects.filter(pk=instance_id).first()
            if instance:
                initial.update(scope_kind="instances", scope_instances=[instance])
        return initial

    def get_context_data(self, **kwargs):
        return super().get_context_data(title="Create exception", rule_choices=selectors.rule_choices(), **kwargs)

    def perform(self, form):
        d = form.cleaned_data
        exception = services.exception_create(
            actor=self.request.user,
            policy=d["policy"],
            rule_key=d["rule_key"].strip(),
            scope=d["scope"],
            justification=d["justification"],
            expires_at=d["expires_at"],
        )
        messages.success(self.request, f"{exception} created until {exception.expires_at:%Y-%m-%d %H:%M}.")
        return redirect("governance:exception_list")


class ExceptionRevokeView(RoleRequiredMixin, View):
    def post(self, request, pk):
        exception = get_object_or_404(PolicyException, pk=pk)
        try:
            services.exception_revoke(actor=request.user, exception=exception)
            messages.success(request, f"{exception} revoked; its violations re-open if still failing.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return redirect("governance:exception_list")
