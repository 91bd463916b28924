from django.urls import path
from rest_framework import routers

from . import views

router = routers.SimpleRouter(trailing_slash=False)
router.register("policies", views.PolicyViewSet, basename="governance-policy")
router.register("violations", views.ViolationViewSet, basename="governance-violation")
router.register("exceptions", views.PolicyExceptionViewSet, basename="governance-exception")
router.register("compliance", views.ComplianceViewSet, basename="governance-compliance")

urlpatterns = [
    path("compliance", views.ComplianceSummaryView.as_view(), name="governance-compliance-summary"),
    *router.urls,
]
