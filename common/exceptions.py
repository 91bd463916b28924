"""Errors that carry meaning to the user: mapped to JSON by the API handler and to messages in views.

Every 4xx body has one shape (docs/api.md): ``{"error": code, "message": words, "errors": {path: [words]}}``.
`errors` names each offending field by the request's own path (``canary.instances``,
``rules.apps[1].min_version``); an error about the request as a whole has no field and an empty `errors`.
"""

NON_FIELD = "non_field_errors"  # the `errors` key of a problem with the request as a whole


class ApplicationError(Exception):
    """A request that cannot be carried out, with a message a person can act on.

    ``ApplicationError("Give the policy a name.", field="name")`` names one field;
    ``ApplicationError.from_errors({...})`` reports several problems at once.
    """

    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        errors: dict[str, list[str]] | None = None,
        code: str | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.errors: dict[str, list[str]] = {key: list(value) for key, value in (errors or {}).items()}
        if field:
            self.errors.setdefault(field, []).append(message)
        self.extra = extra or {}

    @classmethod
    def from_errors(cls, errors: dict[str, list[str]], *, code: str | None = None, extra: dict | None = None):
        """One error for several problems: the message lists them all, `errors` keeps them per field."""
        return cls(summarize(errors), errors=errors, code=code, extra=extra)

    @property
    def field(self) -> str | None:
        """The first field named, for callers that show one message beside one input."""
        return next(iter(self.errors), None)

    def as_body(self) -> dict:
        return {"error": self.code, "message": self.message, "errors": self.errors, **self.extra}


class ConflictError(ApplicationError):
    """The object is not in a state that allows the action (e.g. promoting a rolled-back canary)."""

    status_code = 409
    code = "conflict"


class NotFoundError(ApplicationError):
    status_code = 404
    code = "not_found"


class PreconditionFailed(ApplicationError):
    """A conditional request whose condition does not hold (HTTP 412), e.g. a heartbeat's If-Match."""

    status_code = 412
    code = "precondition_failed"


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


class ErrorCollector:
    """Gathers every problem of one input before raising, so the user sees them all at once.

    problems = ErrorCollector()
    problems.add("rules.apps[1].min_version", "'banana' is not a version.")
    problems.raise_if_any()   # ApplicationError.from_errors(...)
    """

    def __init__(self):
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def merge(self, errors: dict[str, list[str]], prefix: str = "") -> None:
        for path, messages in errors.items():
            for message in messages:
                self.add(join_path(prefix, path), message)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self, *, code: str | None = None) -> None:
        if self.errors:
            raise ApplicationError.from_errors(self.errors, code=code)


def join_path(prefix: str, path: str | int) -> str:
    """`rules` + `apps` → `rules.apps`; `rules.apps` + 1 → `rules.apps[1]`; "" + `name` → `name`."""
    if isinstance(path, int):
        return f"{prefix}[{path}]"
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def summarize(errors: dict[str, list[str]]) -> str:
    """Words for a whole set of field errors: the one problem, or all of them in order."""
    items = [(path, message) for path, messages in errors.items() for message in messages]
    if not items:
        return "The request is not valid."
    parts = [f"{path}: {message}" if path and path != NON_FIELD else message for path, message in items]
    if len(parts) == 1:
        return parts[0]
    return f"{len(parts)} problems: " + "; ".join(parts)
