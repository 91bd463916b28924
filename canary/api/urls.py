from rest_framework import routers

from .views import CanaryViewSet

router = routers.SimpleRouter(trailing_slash=False)
router.register("canary", CanaryViewSet, basename="canary")

urlpatterns = router.urls
