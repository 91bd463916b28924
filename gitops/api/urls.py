from django.urls import path
from rest_framework import routers

from . import views

router = routers.SimpleRouter(trailing_slash=False)
router.register("gitops/desired-config", views.DesiredEntryViewSet, basename="gitops-entry")
router.register("gitops", views.RepositoryViewSet, basename="gitops")

app_name = "gitops-api"
urlpatterns = [
    # Before the router, so that "conflicts" is never read as a repository id.
    path("gitops/conflicts/<int:pk>", views.ConflictView.as_view(), name="conflict"),
    path("gitops/conflicts/<int:pk>/resolve", views.ConflictResolveView.as_view(), name="conflict-resolve"),
    path("gitops/runs/<int:pk>", views.SyncRunView.as_view(), name="gitops-run"),
    path("gitops/<int:pk>/webhook", views.WebhookView.as_view(), name="gitops-webhook"),
    *router.urls,
]
