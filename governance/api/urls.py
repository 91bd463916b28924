from django.urls import path
from rest_framework import routers

from . import remediation, reports, views

router = routers.SimpleRouter(trailing_slash=False)
router.register("policies", views.PolicyViewSet, basename="governance-policy")
router.register("violations", views.ViolationViewSet, basename="governance-violation")
router.register("exceptions", views.PolicyExceptionViewSet, basename="governance-exception")
router.register("compliance", views.ComplianceViewSet, basename="governance-compliance")

urlpatterns = [
    path("compliance", views.ComplianceSummaryView.as_view(), name="governance-compliance-summary"),
    path("reports/compliance", reports.ComplianceReportView.as_view(), name="governance-compliance-report"),
    # Enforce mode (governance/api/remediation.py)
    path("policies/<int:pk>/remediation", remediation.PolicyRemediationView.as_view(), name="governance-remediation"),
    path(
        "policies/<int:pk>/remediation/preview",
        remediation.PolicyRemediationPreviewView.as_view(),
        name="governance-remediation-preview",
    ),
    path(
        "policies/<int:pk>/remediation/resume",
        remediation.PolicyRemediationResumeView.as_view(),
        name="governance-remediation-resume",
    ),
    path("remediation/preview", remediation.RemediationPreviewView.as_view(), name="governance-remediation-draft"),
    path(
        "violations/<int:pk>/remediation",
        remediation.ViolationRemediationView.as_view(),
        name="governance-violation-remediation",
    ),
    *router.urls,
]
