from django.urls import path

from . import views

app_name = "fleet"
urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    # Servers
    path("servers/", views.ServerListView.as_view(), name="server_list"),
    path("servers/names/", views.ServerNamesView.as_view(), name="server_names"),
    path("servers/<int:pk>/", views.ServerDetailView.as_view(), name="server_detail"),
    path("servers/<int:pk>/apps/", views.ServerAppsView.as_view(), name="server_apps"),
    path("servers/<int:pk>/edit/", views.ServerEditView.as_view(), name="server_edit"),
    path("servers/<int:pk>/delete/", views.ServerDeleteView.as_view(), name="server_delete"),
    # Groups
    path("groups/", views.GroupListView.as_view(), name="group_list"),
    path("groups/new/", views.GroupCreateView.as_view(), name="group_create"),
    path("groups/<int:pk>/", views.GroupDetailView.as_view(), name="group_detail"),
    path("groups/<int:pk>/edit/", views.GroupUpdateView.as_view(), name="group_edit"),
    path("groups/<int:pk>/delete/", views.GroupDeleteView.as_view(), name="group_delete"),
    # Tags
    path("tags/", views.TagListView.as_view(), name="tag_list"),
    path("tags/new/", views.TagCreateView.as_view(), name="tag_create"),
    path("tags/<int:pk>/edit/", views.TagRenameView.as_view(), name="tag_edit"),
    path("tags/<int:pk>/delete/", views.TagDeleteView.as_view(), name="tag_delete"),
    # Registration tokens
    path("registration-tokens/", views.TokenListView.as_view(), name="token_list"),
    path("registration-tokens/new/", views.TokenCreateView.as_view(), name="token_create"),
    path("registration-tokens/<int:pk>/", views.TokenDetailView.as_view(), name="token_detail"),
    path("registration-tokens/<int:pk>/revoke/", views.TokenRevokeView.as_view(), name="token_revoke"),
    # Operations
    path("operations/", views.CommandListView.as_view(), name="command_list"),
    path("operations/new/", views.CommandCreateView.as_view(), name="command_create"),
    path("operations/target-preview/", views.TargetPreviewView.as_view(), name="target_preview"),
    path("operations/<int:pk>/", views.CommandDetailView.as_view(), name="command_detail"),
    path("operations/<int:command_pk>/runs/<int:pk>/", views.RunDetailView.as_view(), name="run_detail"),
    path("operations/<int:command_pk>/runs/<int:pk>/revert/", views.RunRevertView.as_view(), name="run_revert"),
    # Settings
    path("settings/license/", views.LicenseView.as_view(), name="license"),
]
