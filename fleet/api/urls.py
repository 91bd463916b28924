from django.urls import path
from rest_framework import routers

from . import views

router = routers.SimpleRouter(trailing_slash=False)
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("groups", views.GroupViewSet, basename="group")
router.register("tags", views.TagViewSet, basename="tag")
router.register("registration-tokens", views.RegistrationTokenViewSet, basename="registration-token")
router.register("commands", views.CommandViewSet, basename="command")
router.register("command-runs", views.CommandRunViewSet, basename="command-run")

app_name = "fleet-api"
urlpatterns = [
    path("summary", views.FleetSummaryView.as_view(), name="summary"),
    path("health", views.FleetHealthView.as_view(), name="health"),
    *router.urls,
]
