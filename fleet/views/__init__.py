"""Fleet pages, by sub-domain. Every write goes through a service (which audit-logs); shared reads go
through selectors and the FilterSets the API uses too. fleet/urls.py names the views from here."""

from .dashboard import (
    DashboardView,
    os_chart,
    panel_urls,
    status_chart,
)
from .operations import (
    PREVIEW_NAMES,
    CommandCreateView,
    CommandDetailView,
    CommandListView,
    RunDetailView,
    RunRevertView,
    TargetPreviewView,
)
from .registration import (
    LicenseView,
    TokenCreateView,
    TokenDetailView,
    TokenListView,
    TokenRevokeView,
)
from .servers import (
    APPS_PER_PAGE,
    UPDATES_SHOWN,
    GroupCreateView,
    GroupDeleteView,
    GroupDetailView,
    GroupListView,
    GroupUpdateView,
    ServerAppsView,
    ServerDeleteView,
    ServerDetailView,
    ServerEditView,
    ServerListView,
    ServerNamesView,
    apps_table,
)
from .tags import TagCreateView, TagDeleteView, TagListView, TagRenameView

__all__ = [
    "TagCreateView",
    "TagDeleteView",
    "TagListView",
    "TagRenameView",
    "APPS_PER_PAGE",
    "CommandCreateView",
    "CommandDetailView",
    "CommandListView",
    "DashboardView",
    "GroupCreateView",
    "GroupDeleteView",
    "GroupDetailView",
    "GroupListView",
    "GroupUpdateView",
    "LicenseView",
    "PREVIEW_NAMES",
    "RunDetailView",
    "RunRevertView",
    "ServerAppsView",
    "ServerDeleteView",
    "ServerDetailView",
    "ServerEditView",
    "ServerListView",
    "ServerNamesView",
    "TargetPreviewView",
    "TokenCreateView",
    "TokenDetailView",
    "TokenListView",
    "TokenRevokeView",
    "UPDATES_SHOWN",
    "apps_table",
    "os_chart",
    "panel_urls",
    "status_chart",
]
