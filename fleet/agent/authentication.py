"""Agents authenticate with their own credential, never as users (and users never as agents)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission

from fleet.models import Instance
from fleet.services import agent_authenticate


class AgentPrincipal:
    """`request.user` on agent endpoints: the instance behind the credential. Not a common.User, so
    RolePermission (every user endpoint) refuses it."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, instance: Instance, credential: str):
        self.instance = instance
        self.pk = self.throttle_key(credential)

    @staticmethod
    def throttle_key(credential: str) -> str:
        """Throttles key on `pk`: the credential's key id, prefixed so it never meets a user id."""
        return "agent:" + credential.split(".", 1)[0]

    def __str__(self):
        return f"agent:{self.instance.name}"


class AgentCredentialAuthentication(authentication.BaseAuthentication):
    """`Authorization: Agent <credential>` as issued at registration."""

    keyword = "Agent"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        parts = header.split()
        if not parts or parts[0] != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Agent header: send 'Agent <credential>'.")
        instance = agent_authenticate(parts[1])
        if instance is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked agent credential.")
        return AgentPrincipal(instance, parts[1]), None

    def authenticate_header(self, request):
        return self.keyword


class IsAgent(BasePermission):
    """Agent endpoints accept only agent credentials: a user's token or session is refused."""

    def has_permission(self, request, view):
        return isinstance(request.user, AgentPrincipal)


class AgentAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = AgentCredentialAuthentication
    name = "agentCredential"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Agent <credential>` as returned by /api/agent/register",
        }
