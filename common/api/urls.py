from rest_framework import routers

from . import views

router = routers.SimpleRouter(trailing_slash=False)
router.register("users", views.UserViewSet, basename="user")
router.register("audit", views.AuditViewSet, basename="audit")
router.register("notifications", views.NotificationViewSet, basename="notification")

app_name = "common-api"
urlpatterns = router.urls
