from django.urls import path

from common.choices import Role

from . import views

app_name = "gitops"
urlpatterns = [
    path("", views.RepositoryListView.as_view(), name="list"),
    path("connect/", views.RepositoryConnectView.as_view(), name="connect"),
    path("conflicts/", views.ConflictListView.as_view(), name="conflicts"),
    path("conflicts/<int:pk>/resolve/", views.ConflictResolveView.as_view(), name="conflict_resolve"),
    path("config/", views.DesiredConfigView.as_view(), name="config"),
    path("config/<int:pk>/delete/", views.DesiredEntryDeleteView.as_view(), name="entry_delete"),
    path("runs/<int:pk>/", views.SyncRunDetailView.as_view(), name="run_detail"),
    path("<int:pk>/", views.RepositoryDetailView.as_view(), name="detail"),
    path("<int:pk>/sync/", views.RepositoryActionView.as_view(action="sync", write_role=Role.OPERATOR), name="sync"),
    path(
        "<int:pk>/fetch-host-key/", views.RepositoryActionView.as_view(action="fetch_host_key"), name="fetch_host_key"
    ),
    path(
        "<int:pk>/confirm-host-key/",
        views.RepositoryActionView.as_view(action="confirm_host_key"),
        name="confirm_host_key",
    ),
    path("<int:pk>/settings/", views.RepositorySettingsView.as_view(), name="settings"),
    path("<int:pk>/sync-to-revision/", views.SyncToRevisionView.as_view(), name="sync_to_revision"),
    path(
        "<int:pk>/preview/",
        views.RepositoryActionView.as_view(action="preview", write_role=Role.OPERATOR),
        name="preview",
    ),
    path(
        "<int:pk>/webhook-secret/", views.RepositoryActionView.as_view(action="webhook_secret"), name="webhook_secret"
    ),
    path("<int:pk>/delete/", views.RepositoryActionView.as_view(action="delete"), name="delete"),
]
