"""Governance pages, by sub-domain: the dashboard and panels, the lists, policies, exceptions, enforce mode
(remediation) and reports. governance/urls.py and tests import the views from here."""

from .dashboard import DashboardView, FleetCompliancePanelView, ServerPanelView, ensure_todays_snapshot
from .exceptions import ExceptionCreateView, ExceptionRevokeView
from .lists import ExceptionListView, PolicyListView, ScoreListView, ViolationExportView, ViolationListView
from .policies import (
    PolicyCreateView,
    PolicyDeleteView,
    PolicyDetailView,
    PolicyEditView,
    PolicyPreviewView,
    PolicyToggleView,
    PolicyTypeChooseView,
    evaluation_pending,
    policy_managed_message,
)
from .remediation import RemediationEditView, RemediationPanelView, RemediationResumeView, ViolationRemediationView
from .reports import ComplianceReportView

__all__ = [
    "ComplianceReportView",
    "DashboardView",
    "ExceptionCreateView",
    "ExceptionListView",
    "ExceptionRevokeView",
    "FleetCompliancePanelView",
    "PolicyCreateView",
    "PolicyDeleteView",
    "PolicyDetailView",
    "PolicyEditView",
    "PolicyListView",
    "PolicyPreviewView",
    "PolicyToggleView",
    "PolicyTypeChooseView",
    "RemediationEditView",
    "RemediationPanelView",
    "RemediationResumeView",
    "ScoreListView",
    "ServerPanelView",
    "ViolationExportView",
    "ViolationListView",
    "ViolationRemediationView",
    "ensure_todays_snapshot",
    "evaluation_pending",
    "policy_managed_message",
]
