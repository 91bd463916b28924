"""Tags: every key=value label with how many servers carry it and what selects servers by it.
Operators create, rename and delete tags; everyone else reads."""

from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.generic import FormView, ListView

from common.choices import Role
from common.tables import TableListMixin
from common.views import RoleRequiredMixin, ServiceActionView, ServiceFormMixin
from fleet import services
from fleet.forms import TagForm
from fleet.models import Tag
from fleet.tables import TagTable


class TagListView(TableListMixin, RoleRequiredMixin, ListView):
    template_name = "fleet/tag_list.html"
    table_class = TagTable
    context_object_name = "tags"
    paginate_by = 50
    write_role = Role.OPERATOR
    sort_fields = {"tag": "key", "value": "value", "servers": "server_count"}

    def get_queryset(self):
        qs = Tag.objects.all()
        q = self.request.GET.get("q", "").strip()[:100]
        if q:
            qs = qs.filter(Q(key__icontains=q) | Q(value__icontains=q))
        qs = qs.annotate(server_count=Count("instances"))
        return self.sorted(qs.order_by("key", "value"))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(q=self.request.GET.get("q", ""), **kwargs)
        context["filtered"] = bool(context["q"])
        return context


class TagCreateView(RoleRequiredMixin, ServiceFormMixin, FormView):
    required_role = Role.OPERATOR
    write_role = Role.OPERATOR
    template_name = "fleet/tag_form.html"
    form_class = TagForm

    def perform(self, form):
        tag = services.tag_create(actor=self.request.user, tag=form.cleaned_data["tag"])
        messages.success(self.request, f"Tag {tag} created.")
        return redirect("fleet:tag_list")


class TagRenameView(TagCreateView):
    @cached_property
    def tag(self):  # looked up after the role check
        return get_object_or_404(Tag, pk=self.kwargs["pk"])

    def get_initial(self):
        return {"tag": str(self.tag)}

    def get_context_data(self, **kwargs):
        return super().get_context_data(tag=self.tag, **kwargs)

    def perform(self, form):
        old = str(self.tag)
        tag = services.tag_rename(actor=self.request.user, tag=self.tag, new=form.cleaned_data["tag"])
        messages.success(self.request, f"Tag {old} renamed to {tag}; the scopes that named it follow.")
        return redirect("fleet:tag_list")


class TagDeleteView(ServiceActionView):
    model = Tag
    required_role = Role.OPERATOR
    write_role = Role.OPERATOR
    confirm_title = "Delete tag"
    confirm_text = "Delete the tag {obj}? The servers that carry it lose it; they stay in the fleet."
    confirm_button = "Delete tag"

    def get_success_url(self, obj):
        return reverse("fleet:tag_list")

    get_cancel_url = get_success_url

    def act(self, obj):
        name = str(obj)
        services.tag_delete(actor=self.request.user, tag=obj)
        return f"Tag {name} deleted."
