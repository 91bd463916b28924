from django.urls import path

from . import views

app_name = "common"
urlpatterns = [
    path("settings/users/", views.UserListView.as_view(), name="user_list"),
    path("settings/users/new/", views.UserCreateView.as_view(), name="user_create"),
    path("settings/users/<int:pk>/", views.UserUpdateView.as_view(), name="user_edit"),
    path("settings/users/<int:pk>/api-token/revoke/", views.UserTokenRevokeView.as_view(), name="user_token_revoke"),
    path("settings/api-token/", views.ApiTokenView.as_view(), name="api_token"),
    path("settings/api-token/regenerate/", views.ApiTokenRegenerateView.as_view(), name="api_token_regenerate"),
    path("settings/api-token/revoke/", views.ApiTokenRevokeView.as_view(), name="api_token_revoke"),
    path("settings/audit/", views.AuditListView.as_view(), name="audit_list"),
    path("notifications/", views.NotificationListView.as_view(), name="notification_list"),
    path("notifications/bell/", views.NotificationBellView.as_view(), name="notification_bell"),
    path("notifications/read/", views.NotificationMarkReadView.as_view(), name="notification_mark_read"),
]
