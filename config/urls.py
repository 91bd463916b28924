from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from common.metrics import metrics_view
from fleet.agent import views as agent_views
from fleet.api import views as fleet_api_views

urlpatterns = [
    # First: agents call these many times a second, so they should resolve after the fewest patterns.
    path("api/agent/", include("fleet.agent.urls")),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", login_not_required(agent_views.healthz), name="healthz"),
    path("livez", login_not_required(agent_views.livez), name="livez"),
    path("metrics", metrics_view, name="metrics"),
    # HTML
    path("", include("fleet.urls")),
    path("", include("common.urls")),
    path("governance/canary/", include("canary.urls")),
    path("governance/gitops/", include("gitops.urls")),
    path("governance/", include("governance.urls")),
    # API: the spec fixes /api/fleet/canary and /api/governance/gitops (routers use trailing_slash=False).
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/fleet/", include("canary.api.urls")),
    path("api/fleet/", include("fleet.api.urls")),
    path("api/governance/", include("gitops.api.urls")),
    path("api/governance/", include("governance.api.urls")),
    path("api/license", fleet_api_views.LicenseView.as_view(), name="api-license"),
    path("api/", include("common.api.urls")),
]

handler400 = "common.errors.bad_request"
handler404 = "common.errors.not_found"
handler500 = "common.errors.server_error"
