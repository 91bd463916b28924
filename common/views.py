from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.views.generic import TemplateView

from .choices import Role
from .exceptions import ApplicationError


class RoleRequiredMixin(LoginRequiredMixin):
    """HTML views: any signed-in user may read; `required_role` (viewer by default) to see the view at all,
    `write_role` (admin by default) for POST. The API applies the same rule (common.api.permissions)."""

    required_role = Role.VIEWER
    write_role = Role.ADMIN

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        needed = self.write_role if request.method not in ("GET", "HEAD", "OPTIONS") else self.required_role
        if not request.user.has_role(needed):
            raise PermissionDenied(f"This needs the {Role(needed).label} role.")
        return super().dispatch(request, *args, **kwargs)

    @property
    def can_write(self) -> bool:
        return self.request.user.has_role(self.write_role)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["can_write"] = self.can_write
        return context


class ServiceFormMixin:
    """Form views whose form_valid calls a service: an ApplicationError becomes a form error, nothing saved."""

    def form_valid(self, form):
        try:
            return self.perform(form)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
            messages.error(self.request, exc.message)
            return self.form_invalid(form)

    def perform(self, form):  # pragma: no cover - each view implements it
        raise NotImplementedError


class PlaceholderView(RoleRequiredMixin, TemplateView):
    """Sections not built yet show where they will be, rather than a broken link."""

    template_name = "common/placeholder.html"
    title = ""

    def get_context_data(self, **kwargs):
        return super().get_context_data(title=self.title, **kwargs)
