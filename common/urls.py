from django.urls import path

from .views import PlaceholderView

app_name = "common"
urlpatterns = [
    path("settings/users/", PlaceholderView.as_view(title="Users"), name="user_list"),
    path("settings/audit/", PlaceholderView.as_view(title="Audit log"), name="audit_list"),
    path("notifications/", PlaceholderView.as_view(title="Notifications"), name="notification_list"),
]
