from django.urls import path

from . import views
from .policyfiles.views import PolicyImportView

app_name = "governance"
urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("scores/", views.ScoreListView.as_view(), name="score_list"),
    path("policies/", views.PolicyListView.as_view(), name="policy_list"),
    path("policies/new/", views.PolicyTypeChooseView.as_view(), name="policy_type_choose"),
    path("policies/new/<str:policy_type>/", views.PolicyCreateView.as_view(), name="policy_create"),
    path("policies/import/", PolicyImportView.as_view(), name="policy_import"),
    path("policies/preview/<str:policy_type>/", views.PolicyPreviewView.as_view(), name="policy_preview"),
    path("policies/<int:pk>/", views.PolicyDetailView.as_view(), name="policy_detail"),
    path("policies/<int:pk>/edit/", views.PolicyEditView.as_view(), name="policy_edit"),
    path("policies/<int:pk>/toggle/", views.PolicyToggleView.as_view(), name="policy_toggle"),
    path("policies/<int:pk>/delete/", views.PolicyDeleteView.as_view(), name="policy_delete"),
    path("violations/", views.ViolationListView.as_view(), name="violation_list"),
    path("reports/", views.ComplianceReportView.as_view(), name="compliance_report"),
    # Enforce mode (governance/views.py)
    path("policies/<int:pk>/remediation/", views.RemediationEditView.as_view(), name="remediation_edit"),
    path(
        "policies/<int:pk>/remediation/panel/",
        views.RemediationPanelView.as_view(),
        name="remediation_panel",
    ),
    path(
        "policies/<int:pk>/remediation/resume/",
        views.RemediationResumeView.as_view(),
        name="remediation_resume",
    ),
    path("violations/<int:pk>/", views.ViolationRemediationView.as_view(), name="violation_detail"),
    path("violations/export.csv", views.ViolationExportView.as_view(), name="violation_export"),
    path("exceptions/", views.ExceptionListView.as_view(), name="exception_list"),
    path("exceptions/new/", views.ExceptionCreateView.as_view(), name="exception_create"),
    path("exceptions/<int:pk>/revoke/", views.ExceptionRevokeView.as_view(), name="exception_revoke"),
    path("panels/fleet-compliance/", views.FleetCompliancePanelView.as_view(), name="fleet_compliance_panel"),
    path("panels/servers/<int:pk>/", views.ServerPanelView.as_view(), name="server_panel"),
]
