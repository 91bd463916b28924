from django.apps import apps
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.cache import patch_vary_headers
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import FormView, ListView, TemplateView

from . import services
from .choices import Role
from .exceptions import NON_FIELD, ApplicationError
from .filters import AuditFilterSet
from .forms import UserCreateForm, UserUpdateForm, style_form
from .models import ApiToken, AuditEntry, Notification, User
from .tables import AuditTable, NotificationTable, TableListMixin, UserTable
from .validators import parse_id

# Query parameters of a list that do not filter it.
LIST_PARAMS = ("page", "sort", "export")


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
        user = self.request.user
        context["can_write"] = self.can_write
        # Pages with actions for several roles (e.g. revert for operators, delete for admins).
        context["can_operate"] = user.has_role(Role.OPERATOR)
        context["can_admin"] = user.has_role(Role.ADMIN)
        style_form(context.get("form"))
        style_form(getattr(context.get("filter"), "form", None), small=True)
        if "filter" in context:  # a list: does the URL narrow it (the filter bar then offers "Clear")
            context.setdefault("filtered", any(v for k, v in self.request.GET.items() if k not in LIST_PARAMS))
        return context


class ServiceFormMixin:
    """Form views whose form_valid calls a service: an ApplicationError becomes a form error, nothing saved."""

    def form_valid(self, form):
        try:
            return self.perform(form)
        except ApplicationError as exc:
            add_service_errors(form, exc)
            return self.form_invalid(form)
        except ValidationError as exc:
            # Model validation inside a service (full_clean: unique names, lengths) lands on the form.
            errors = exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}
            for field, field_errors in errors.items():
                form.add_error(field if field in form.fields else None, field_errors)
            return self.form_invalid(form)

    def perform(self, form):  # pragma: no cover - each view implements it
        raise NotImplementedError


def redirect_next(request, default):
    """Redirect to the form's `next` when it is a path on this site, else to `default` (no open redirect).
    Only a path: redirect() reads anything else as a URL pattern name, and `next=x` was a NoReverseMatch."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return redirect(default)


def add_service_errors(form, exc: ApplicationError) -> None:
    """A service's errors on the form's own fields, the API's messages word for word: `rules.apps[1].name`
    lands on the `rules` field as "apps[1].name: …"; a path no field owns, or none, on the form itself."""
    if not exc.errors:
        form.add_error(None, exc.message)
        return
    aliases = getattr(form, "service_fields", {})  # the API's field (or whole path) → the form field
    for path, field_messages in exc.errors.items():
        top = path.split(".", 1)[0].split("[", 1)[0]
        rest = path[len(top) :].lstrip(".")
        top = aliases.get(top, top)
        if path in aliases:
            top, rest = aliases[path], ""
        for message in field_messages:
            if top in form.fields:
                form.add_error(top, f"{rest}: {message}" if rest else message)
            else:
                form.add_error(None, message if path == NON_FIELD else f"{path}: {message}")


class HtmxPartialMixin:
    """Live parts: an htmx request (HX-Request header) gets `partial_template_name`, a browser the page."""

    partial_template_name = ""

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"

    def get_template_names(self):
        if self.partial_template_name and self.is_htmx:
            return [self.partial_template_name]
        return super().get_template_names()

    def render_to_response(self, context, **kwargs):
        response = super().render_to_response(context, **kwargs)
        patch_vary_headers(response, ["HX-Request"])
        return response


class ServiceActionView(RoleRequiredMixin, View):
    """POST-only action on one object (revoke, revert, mark read): GET shows a confirmation page.

    Subclasses set `model`, `required_role`/`write_role`, `confirm_title`/`confirm_text`, implement `act(obj)`,
    returning the flash message (or a response). ApplicationError becomes an error message.
    """

    model = None
    # Even the confirmation page needs the role that may act.
    required_role = Role.ADMIN
    write_role = Role.ADMIN
    confirm_template = "common/confirm.html"
    confirm_title = "Are you sure?"
    confirm_text = ""
    confirm_button = "Confirm"
    danger = True

    def get_object(self):
        return get_object_or_404(self.model, pk=self.kwargs["pk"])

    def get_success_url(self, obj):
        return obj.get_absolute_url()

    def get_cancel_url(self, obj):
        return obj.get_absolute_url()

    def get(self, request, *args, **kwargs):
        obj = self.get_object()
        context = {
            "object": obj,
            "title": self.confirm_title,
            "text": self.confirm_text.format(obj=obj),
            "button": self.confirm_button,
            "danger": self.danger,
            "cancel_url": self.get_cancel_url(obj),
        }
        return render(request, self.confirm_template, context)

    def post(self, request, *args, **kwargs):
        obj = self.get_object()
        try:
            result = self.act(obj)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect(self.get_cancel_url(obj))
        if isinstance(result, str):
            messages.success(request, result)
            return redirect(self.get_success_url(obj))
        return result

    def act(self, obj):  # pragma: no cover - each view implements it
        raise NotImplementedError


class PlaceholderView(RoleRequiredMixin, TemplateView):
    """Sections not built yet show where they will be, rather than a broken link."""

    template_name = "common/placeholder.html"
    title = ""

    def get_context_data(self, **kwargs):
        return super().get_context_data(title=self.title, **kwargs)


# --- Settings > Users --------------------------------------------------------------------------


class UserListView(TableListMixin, RoleRequiredMixin, ListView):
    required_role = Role.ADMIN  # the user directory is for administrators, like GET /api/users
    template_name = "common/user_list.html"
    table_class = UserTable
    context_object_name = "users"
    paginate_by = 50
    sort_fields = {
        "username": "username",
        "email": "email",
        "role": "role",
        "active": "is_active",
        "last_login": "last_login",
    }

    def get_queryset(self):
        # The date only: the key of an existing token is never shown again.
        return self.sorted(User.objects.annotate(api_token_created=F("api_token__created")).order_by("username"))


class UserCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "common/user_form.html"
    form_class = UserCreateForm
    success_url = reverse_lazy("common:user_list")

    def perform(self, form):
        data = form.cleaned_data
        user = services.user_create(
            actor=self.request.user,
            username=data["username"],
            email=data["email"],
            role=data["role"],
            password=data["password"],
        )
        messages.success(self.request, f"User {user.username} created with the {user.get_role_display()} role.")
        return redirect(self.success_url)


class UserUpdateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.ADMIN
    template_name = "common/user_form.html"
    form_class = UserUpdateForm
    success_url = reverse_lazy("common:user_list")

    @cached_property
    def target(self):  # loaded after the role check
        return get_object_or_404(User, pk=self.kwargs["pk"])

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "user": self.target, "actor": self.request.user}

    def get_initial(self):
        return {"role": self.target.role, "is_active": self.target.is_active}

    def get_context_data(self, **kwargs):
        return super().get_context_data(target=self.target, **kwargs)

    def perform(self, form):
        data = form.cleaned_data
        services.user_update(actor=self.request.user, user=self.target, role=data["role"], is_active=data["is_active"])
        messages.success(self.request, f"User {self.target.username} updated.")
        return redirect(self.success_url)


class UserTokenRevokeView(ServiceActionView):
    """An admin cuts off another user's API token (a leaked key, a departed script) without touching the account."""

    model = User
    confirm_title = "Revoke API token"
    confirm_text = (
        "Revoke the API token of {obj.username}? Requests with it are refused at once. "
        "{obj.username} can still sign in and create a new one; deactivate the account to stop that too."
    )
    confirm_button = "Revoke token"

    def get_success_url(self, obj):
        return reverse("common:user_list")

    get_cancel_url = get_success_url

    def act(self, obj):
        services.api_token_revoke(actor=self.request.user, user=obj)
        return f"API token of {obj.username} revoked."


# --- Settings > API token ----------------------------------------------------------------------
# Every user manages their own token and nobody else's: no URL here names a user, each view acts on
# request.user. A key is shown once, in the response to the POST that made it; it never goes into the
# session, a flash message or a URL.


def _api_token_page(request, *, new_key: str = ""):
    created = ApiToken.objects.filter(user=request.user).values_list("created", flat=True).first()
    context = {
        "token_created": created,
        "new_key": new_key,
        "example_url": request.build_absolute_uri(reverse("fleet-api:instance-list")),
    }
    response = render(request, "common/api_token.html", context)
    response["Cache-Control"] = "no-store"
    return response


class ApiTokenView(RoleRequiredMixin, View):
    """GET: whether the user has a token and since when. POST: create one (Regenerate replaces it)."""

    write_role = Role.VIEWER

    def get(self, request):
        return _api_token_page(request)

    def post(self, request):
        try:
            key = services.api_token_create(actor=request.user, user=request.user)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect("common:api_token")
        messages.success(request, "API token created.")
        return _api_token_page(request, new_key=key)


class ApiTokenActionView(ServiceActionView):
    """The user's own token: GET asks for confirmation, POST acts."""

    required_role = Role.VIEWER
    write_role = Role.VIEWER

    def get_object(self):
        return self.request.user

    def get_success_url(self, obj):
        return reverse("common:api_token")

    get_cancel_url = get_success_url

    def get(self, request, *args, **kwargs):
        if not ApiToken.objects.filter(user=request.user).exists():  # a stale link: nothing to confirm
            messages.info(request, "You have no API token.")
            return redirect("common:api_token")
        return super().get(request, *args, **kwargs)


class ApiTokenRegenerateView(ApiTokenActionView):
    confirm_title = "Regenerate API token"
    confirm_text = (
        "Replace your API token with a new one? The current key stops working at once: "
        "update every script that uses it."
    )
    confirm_button = "Regenerate token"

    def act(self, obj):
        key = services.api_token_regenerate(actor=self.request.user, user=obj)
        messages.success(self.request, "API token regenerated. The previous key no longer works.")
        return _api_token_page(self.request, new_key=key)


class ApiTokenRevokeView(ApiTokenActionView):
    confirm_title = "Revoke API token"
    confirm_text = "Delete your API token? Requests with it are refused at once. You can create a new one later."
    confirm_button = "Revoke token"

    def act(self, obj):
        services.api_token_revoke(actor=self.request.user, user=obj)
        return "API token revoked. Requests with it are now refused."


# --- Settings > Audit log ---------------------------------------------------------------------


class AuditListView(TableListMixin, RoleRequiredMixin, ListView):
    """Every state-changing action, newest first, filtered like GET /api/audit. A filter that is not
    valid shows its error on the field and no entries (not the unfiltered log)."""

    template_name = "common/audit_list.html"
    table_class = AuditTable
    context_object_name = "entries"
    paginate_by = 50
    sort_fields = {"created": "created", "actor": "actor_label", "action": "action"}

    def get_queryset(self):
        self.filterset = AuditFilterSet(self.request.GET or None, queryset=AuditEntry.objects.all())
        valid = not self.filterset.is_bound or self.filterset.is_valid()
        return self.sorted(self.filterset.qs if valid else AuditEntry.objects.none())

    def get_context_data(self, **kwargs):
        return super().get_context_data(filter=self.filterset, **kwargs)


def link_audit_objects(entries) -> None:
    """Give each entry whose object still exists and has a page an `object_url`: one query per object type."""
    by_type: dict[str, list] = {}
    for entry in entries:
        entry.object_url = ""
        if entry.object_type and parse_id(entry.object_id):
            by_type.setdefault(entry.object_type, []).append(entry)
    for label, group in by_type.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue
        if not hasattr(model, "get_absolute_url"):
            continue
        found = model._default_manager.in_bulk({int(e.object_id) for e in group})
        for entry in group:
            obj = found.get(int(entry.object_id))
            entry.object_url = obj.get_absolute_url() if obj is not None else ""


# --- Notifications -----------------------------------------------------------------------------


class NotificationListView(TableListMixin, RoleRequiredMixin, ListView):
    """The person's own notifications (as cards); the CSV has the same ones."""

    template_name = "common/notification_list.html"
    table_class = NotificationTable
    context_object_name = "notifications"
    paginate_by = 30

    def get_queryset(self):
        qs = Notification.objects.filter(user=self.request.user)
        if self.request.GET.get("unread"):
            qs = qs.filter(read_at__isnull=True)
        return qs

    def get_context_data(self, **kwargs):
        return super().get_context_data(filtered=bool(self.request.GET.get("unread")), **kwargs)


class NotificationBellView(RoleRequiredMixin, TemplateView):
    """htmx: the top bar's unread counter (the context processor counts)."""

    template_name = "includes/notification_bell.html"


class NotificationMarkReadView(RoleRequiredMixin, View):
    """POST `id` (repeatable) marks those read; without ids, all of the user's notifications."""

    write_role = Role.VIEWER  # everyone manages their own notifications

    def post(self, request):
        ids = [pk for pk in map(parse_id, request.POST.getlist("id")) if pk] or None
        count = services.notifications_mark_read(user=request.user, ids=ids)
        if ids is None:
            messages.success(request, "All notifications marked as read.")
        elif count:
            messages.success(request, "Notification marked as read.")
        return redirect_next(request, reverse("common:notification_list"))
