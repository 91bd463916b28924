from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """Per-user API token sent as `Authorization: Bearer <token>`."""

    keyword = "Bearer"
