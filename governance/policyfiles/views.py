"""The policy Import page: upload or paste policy files, see the dry run's diff, then Apply (admins only)."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views import View

from common.choices import Role
from common.exceptions import ApplicationError
from common.views import RoleRequiredMixin
from common.yamlfiles import FilesInvalid

from ..forms import PolicyImportForm
from .format import read_zip_base64
from .plan import policy_files_import


def _files(data: dict) -> dict:
    if data.get("zip_base64"):
        return read_zip_base64(data["zip_base64"])
    return {data.get("filename") or "pasted.yaml": data["text"]}


class PolicyImportView(RoleRequiredMixin, View):
    required_role = Role.ADMIN
    template_name = "governance/policy_import.html"

    def get(self, request):
        return self._render(PolicyImportForm())

    def _render(self, form, status=200, **context):
        return render(
            request=self.request,
            template_name=self.template_name,
            status=status,
            context={"title": "Import policies", "form": form, "can_write": True, **context},
        )

    def post(self, request):
        form = PolicyImportForm(request.POST, request.FILES)
        if not form.is_valid():
            return self._render(form, status=400)
        data, apply = form.cleaned_data, request.POST.get("action") == "apply"
        try:
            plan = policy_files_import(_files(data), actor=request.user, apply=apply, prune=data["prune"])
        except FilesInvalid as exc:
            return self._render(form, status=400, issues=exc.issues)
        except ApplicationError as exc:  # the carried zip_base64 (a hidden field): said above the form
            form.add_error(None, exc.message)
            return self._render(form, status=400)
        if apply:
            s = plan.summary()
            messages.success(
                request,
                f"Imported: {len(s['created'])} created, {len(s['changed'])} changed, {len(s['removed'])} disabled, "
                f"{s['unchanged']} unchanged.",
            )
            return redirect("governance:policy_list")
        # Carry what was previewed to the Apply step (an upload cannot be re-sent by the browser).
        form = PolicyImportForm(
            initial={"text": data.get("text", ""), "zip_base64": data.get("zip_base64", ""), "prune": data["prune"]}
        )
        return self._render(form, plan=plan.summary(), changes=plan.changes(removed_as="disabled"))
