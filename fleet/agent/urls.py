from django.urls import path

from . import views

app_name = "agent"
urlpatterns = [
    path("register", views.RegisterView.as_view(), name="register"),
    path("heartbeat", views.HeartbeatView.as_view(), name="heartbeat"),
    path("commands", views.CommandsView.as_view(), name="commands"),
    path("commands/<int:run_id>/result", views.RunReportView.as_view(), name="run_report"),
]
