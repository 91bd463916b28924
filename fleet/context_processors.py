from common.models import Notification

from .licensing_store import current_license_status


def shell(request):
    """What the layout needs on every page: unread notifications and the license in force."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "unread_notifications": Notification.objects.filter(user=user, read_at__isnull=True).count(),
        "license_status": current_license_status(),
    }
