from django.shortcuts import render

from common.exceptions import UpgradeRequired

from .licensing_store import require_feature


class FeatureRequiredMixin:
    """HTML views of a licensed feature show an upgrade page (HTTP 402) when the plan lacks it."""

    license_feature: str = ""

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            try:
                require_feature(self.license_feature)
            except UpgradeRequired as exc:
                return render(request, "fleet/upgrade.html", {"upgrade": exc}, status=402)
        return super().dispatch(request, *args, **kwargs)
