from django.urls import path

from fleet.views import AuditListView  # its FilterSet lives in fleet; the page belongs to Settings

from . import views

app_name = "common"
urlpatterns = [
    path("settings/users/", views.UserListView.as_view(), name="user_list"),
    path("settings/users/new/", views.UserCreateView.as_view(), name="user_create"),
    path("settings/users/<int:pk>/", views.UserUpdateView.as_view(), name="user_edit"),
    path("settings/audit/", AuditListView.as_view(), name="audit_list"),
    path("notifications/", views.NotificationListView.as_view(), name="notification_list"),
    path("notifications/read/", views.NotificationMarkReadView.as_view(), name="notification_mark_read"),
]
