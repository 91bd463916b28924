from rest_framework.permissions import SAFE_METHODS, BasePermission

from common.choices import Role
from common.models import User


class RolePermission(BasePermission):
    """Users only (never agent credentials). Reading needs any role; writing needs the view's role.

    A view sets `write_role` (default admin) and may override it per action with `action_roles`,
    e.g. `{"promote": Role.OPERATOR}`.
    """

    def has_permission(self, request, view):
        user = request.user
        if not isinstance(user, User) or not user.is_authenticated or not user.is_active:
            return False
        action = getattr(view, "action", None)
        roles = getattr(view, "action_roles", {}) or {}
        if action in roles:
            return user.has_role(roles[action])
        if request.method in SAFE_METHODS:
            return user.has_role(Role.VIEWER)
        return user.has_role(getattr(view, "write_role", Role.ADMIN))
