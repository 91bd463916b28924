from django.urls import path

from common.views import PlaceholderView

app_name = "governance"
urlpatterns = [
    path("", PlaceholderView.as_view(title="Governance dashboard"), name="dashboard"),
    path("policies/", PlaceholderView.as_view(title="Policies"), name="policy_list"),
    path("violations/", PlaceholderView.as_view(title="Violations"), name="violation_list"),
    path("panels/fleet-compliance/", PlaceholderView.as_view(title="Compliance"), name="fleet_compliance_panel"),
    path("panels/servers/<int:pk>/", PlaceholderView.as_view(title="Compliance"), name="server_panel"),
]
