"""Errors that carry meaning to the user: mapped to JSON by the API handler and to messages in views."""


class ApplicationError(Exception):
    """A request that cannot be carried out, with a message a person can act on."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class ConflictError(ApplicationError):
    """The object is not in a state that allows the action (e.g. promoting a rolled-back canary)."""

    status_code = 409
    code = "conflict"


class NotFoundError(ApplicationError):
    status_code = 404
    code = "not_found"


class UpgradeRequired(ApplicationError):
    """The license plan lacks a feature. Body as the product documents it."""

    status_code = 402
    code = "upgrade_required"

    def __init__(self, *, feature: str, current_plan: str, required_plan: str):
        message = (
            f"The '{feature}' feature requires the {required_plan.title()} plan or higher; "
            f"the current license is {current_plan.title()}."
        )
        super().__init__(
            message,
            extra={"feature": feature, "current_plan": current_plan, "required_plan": required_plan},
        )
        self.feature = feature
        self.current_plan = current_plan
        self.required_plan = required_plan
