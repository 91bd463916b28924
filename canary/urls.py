from django.urls import path

from . import views

app_name = "canary"
urlpatterns = [
    path("", views.CanaryListView.as_view(), name="list"),
    path("new/", views.CanaryCreateView.as_view(), name="create"),
    path("new/preview/", views.CanaryPreviewView.as_view(), name="preview"),
    path("<int:pk>/", views.CanaryDetailView.as_view(), name="detail"),
    path("<int:pk>/polls/", views.CanaryPollsView.as_view(), name="polls"),
    path("<int:pk>/promote/", views.CanaryActionView.as_view(action="promote"), name="promote"),
    path("<int:pk>/rollback/", views.CanaryActionView.as_view(action="rollback"), name="rollback"),
    path("<int:pk>/approve/", views.CanaryActionView.as_view(action="approve"), name="approve"),
    path("<int:pk>/pause/", views.CanaryActionView.as_view(action="pause"), name="pause"),
    path("<int:pk>/resume/", views.CanaryActionView.as_view(action="resume"), name="resume"),
]
