from django.urls import path

from common.views import PlaceholderView

app_name = "fleet"
urlpatterns = [
    path("", PlaceholderView.as_view(title="Fleet dashboard"), name="dashboard"),
    path("servers/", PlaceholderView.as_view(title="Servers"), name="server_list"),
    path("servers/<int:pk>/", PlaceholderView.as_view(title="Server"), name="server_detail"),
    path("groups/", PlaceholderView.as_view(title="Groups"), name="group_list"),
    path("groups/<int:pk>/", PlaceholderView.as_view(title="Group"), name="group_detail"),
    path("registration-tokens/", PlaceholderView.as_view(title="Registration tokens"), name="token_list"),
    path("operations/", PlaceholderView.as_view(title="Operations"), name="command_list"),
    path("operations/<int:pk>/", PlaceholderView.as_view(title="Command"), name="command_detail"),
    path("settings/license/", PlaceholderView.as_view(title="License"), name="license"),
]
