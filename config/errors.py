"""Domain errors shared by every app.

Services raise these; `config.api.exception_handler` renders them for the native API as
`{"code", "message", "fields"}` and the MLflow routes render them as `{"error_code", "message"}`.
"""

from typing import Any, ClassVar


class DomainError(Exception):
    """A client mistake or refused action with a stable code and an HTTP status."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid"
    mlflow_code: ClassVar[str] = "INVALID_PARAMETER_VALUE"
    # A refused attempt the history keeps (registry.refusals), noted by the service refusing it.
    refusal: Any = None

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InvalidParameter(DomainError):
    """Input that does not satisfy a rule of the registry."""


class NotFound(DomainError):
    status = 404
    code = "not_found"
    mlflow_code = "RESOURCE_DOES_NOT_EXIST"


class AlreadyExists(DomainError):
    status = 409
    code = "already_exists"
    # MLflow answers 400 for this code; its client's register_model depends on the code.
    mlflow_code = "RESOURCE_ALREADY_EXISTS"


class Conflict(DomainError):
    """The object is not in the state the caller expected (compare-and-set failed)."""

    status = 409
    code = "conflict"
    mlflow_code = "RESOURCE_CONFLICT"


class PermissionDenied(DomainError):
    status = 403
    code = "permission_denied"
    mlflow_code = "PERMISSION_DENIED"


MLFLOW_STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_CONFLICT": 409,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
}
