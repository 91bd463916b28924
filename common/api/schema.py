"""OpenAPI post-processing: every operation documents the error envelope it can answer with."""

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "machine-readable code, e.g. invalid, not_found, upgrade_required"},
        "message": {"type": "string", "description": "what went wrong, in words"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "every problem, by the request's field path (rules.apps[1].min_version); {} when the error "
            "is not about input",
        },
    },
    "required": ["error", "message", "errors"],
    "additionalProperties": True,
}
ERRORS = {
    "400": "Invalid input; `errors` names the fields.",
    "401": "Not authenticated.",
    "402": "The license plan lacks this feature (`upgrade_required`).",
    "403": "Your role does not allow this.",
    "404": "No such object (or page).",
    "409": "The object's state does not allow this action.",
    "429": "Too many requests.",
    "503": "The database is unavailable.",
}
# Answered by the HTTP server in front of Django (gunicorn) before the panel sees the request, so
# not in the JSON envelope: documented without a body schema.
SERVER_ERRORS = {"414": "The request line (URL) is longer than the HTTP server accepts."}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in ERRORS.items():
                if code == "400" and method == "get" and "parameters" not in operation:
                    continue
                responses.setdefault(
                    code, {"description": description, "content": {"application/json": {"schema": ref}}}
                )
            for code, description in SERVER_ERRORS.items():
                responses.setdefault(code, {"description": description})
    return result
