from django.urls import path

from common.views import PlaceholderView

app_name = "canary"
urlpatterns = [
    path("", PlaceholderView.as_view(title="Canary deployments"), name="list"),
]
