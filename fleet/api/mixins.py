from fleet.licensing_store import require_feature


class LicensedFeatureMixin:
    """API views of a licensed feature answer 402 (upgrade_required) when the plan lacks it."""

    license_feature: str = ""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authenticate and check roles first: 401/403 before 402
        require_feature(self.license_feature)
