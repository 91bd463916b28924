from django.urls import path

from common.views import PlaceholderView

app_name = "gitops"
urlpatterns = [
    path("", PlaceholderView.as_view(title="GitOps"), name="list"),
]
