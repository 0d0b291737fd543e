"""What the OpenAPI schema says beyond what views declare (drf-spectacular extensions).

`document_errors` (a postprocessing hook) adds the error answers and the rules of path and
query parameters; `InputSerializerExtension` the rules of input bodies that DRF applies but
does not describe (unknown fields refused, NUL characters refused, blank strings refused).

Views declare their success answers; every operation can also answer with an error, and a client
generated from the schema (or a fuzzer checking it) must find those too. The hook adds them to
every operation, each with the body the API really sends:

- 400 when the operation takes parameters or a body; 413 when it takes a body (native API);
- 401 and 429 when it needs credentials (429: too many failed sign-ins from one address, or a
  throttled route such as token creation), 403 as well (permission, CSRF, read-only token);
- 404 when it names objects in its path, or in its query or body (NOT_FOUND_ELSEWHERE; on
  the MLflow routes, all but MLFLOW_WITHOUT_LOOKUP);
- 409 where a conflict can happen (CONFLICTS).

The native API (`/api/v1/`) answers `{"code", "message", "fields"?}` (config.api); the MLflow
routes answer `{"error_code", "message"}` (registry.mlflow.http).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

ERROR_COMPONENT = "Error"
MLFLOW_ERROR_COMPONENT = "MlflowError"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error of the native API.",
    "properties": {
        "code": {
            "type": "string",
            "description": "Stable: invalid, malformed_request, unauthenticated, "
            "permission_denied, not_found, already_exists, conflict, too_large, throttled, …",
        },
        "message": {"type": "string"},
        "fields": {
            "type": "object",
            "description": "Per field, what is wrong with it (validation errors only).",
            "additionalProperties": {},
        },
    },
    "required": ["code", "message"],
    "additionalProperties": False,
}

MLFLOW_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error of the MLflow and Databricks routes, as MLflow sends it.",
    "properties": {
        "error_code": {
            "type": "string",
            "description": "INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS, UNAUTHENTICATED, "
            "PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST, RESOURCE_CONFLICT, "
            "REQUEST_LIMIT_EXCEEDED, …",
        },
        "message": {"type": "string"},
    },
    "required": ["error_code", "message"],
    "additionalProperties": False,
}

# (method, path) of the operations that can answer 409 (already exists, or a compare-and-set /
# state check that failed). A listed operation missing from the schema fails schema generation.
CONFLICTS: set[tuple[str, str]] = {
    ("post", "/api/v1/models/"),
    ("post", "/api/v1/models/{name}/rename/"),
    ("put", "/api/v1/models/{name}/aliases/{alias}/"),
    ("post", "/api/v1/policies/"),
    ("patch", "/api/v1/policies/{id}/"),
    ("post", "/api/v1/transition-requests/"),
    ("post", "/api/v1/transition-requests/{id}/approve/"),
    ("post", "/api/v1/transition-requests/{id}/reject/"),
    ("post", "/api/v1/transition-requests/{id}/cancel/"),
}

# Operations without path parameters that still look an object up by a name in their query or
# body (a model, a webhook) and answer 404 when the caller cannot see it.
NOT_FOUND_ELSEWHERE: set[tuple[str, str]] = {
    ("get", "/api/v1/transition-requests/"),
    ("post", "/api/v1/transition-requests/"),
    ("post", "/api/v1/policies/"),
    ("get", "/api/v1/webhooks/"),
    ("post", "/api/v1/webhooks/"),
    ("post", "/api/v1/deliveries/replay/"),
}

# MLflow routes that look no model up by name; every other one answers RESOURCE_DOES_NOT_EXIST
# (404) for a model or version the caller cannot see.
MLFLOW_WITHOUT_LOOKUP: set[tuple[str, str]] = {
    ("post", "/api/2.0/mlflow/registered-models/create"),
    ("get", "/api/2.0/mlflow/registered-models/search"),
    ("get", "/api/2.0/mlflow/model-versions/search"),
}

_DESCRIPTIONS = {
    "400": "The request is malformed or a value is invalid.",
    "401": "No credentials, or wrong ones (see WWW-Authenticate).",
    "403": "Authenticated, but not allowed to do this.",
    "404": "No such object, or the caller may not see it (or a page past the last one).",
    "409": "Conflicts with the current state (already exists, moved meanwhile, decided).",
    "413": "The request body is larger than the server accepts.",
    "429": "Too many failed sign-ins from this address, or too many calls to a throttled "
    "route; retry after Retry-After seconds.",
}


def _needs_credentials(operation: dict[str, Any], result: dict[str, Any]) -> bool:
    security = operation.get("security", result.get("security", []))
    return bool(security) and {} not in security


def _error_response(status: str, component: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
    }
    if status == "429":
        response["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
        }
    return response


def error_statuses(
    method: str, path: str, operation: dict[str, Any], needs_auth: bool
) -> list[str]:
    """The error statuses an operation can answer with."""
    parameters = operation.get("parameters", [])
    in_path = any(parameter.get("in") == "path" for parameter in parameters)
    native = path.startswith("/api/v1/")
    if not native:
        # A lookup by name in the query or body, not the path.
        in_path = (method, path) not in MLFLOW_WITHOUT_LOOKUP
    statuses: list[str] = []
    if parameters or "requestBody" in operation:
        statuses.append("400")
    if needs_auth:
        statuses += ["401", "403"]
    paged = any(parameter.get("name") == "page" for parameter in parameters)
    if in_path or paged or (method, path) in NOT_FOUND_ELSEWHERE:
        statuses.append("404")
    if (method, path) in CONFLICTS:
        statuses.append("409")
    if "requestBody" in operation and native:
        statuses.append("413")  # the MLflow routes answer INVALID_PARAMETER_VALUE (400)
    if needs_auth:
        statuses.append("429")
    return statuses


def _path_parameter_schemas() -> dict[str, dict[str, Any]]:
    """Path parameters whose URL converter is `str` but whose values follow rules."""
    from registry.models import ALIAS_MAX_LENGTH, TAG_KEY_MAX_LENGTH
    from registry.validation import ALIAS_PATTERN, TAG_KEY_PATH_PATTERN

    return {
        "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "alias": {"type": "string", "pattern": ALIAS_PATTERN, "maxLength": ALIAS_MAX_LENGTH},
        "key": {
            "type": "string",
            "pattern": TAG_KEY_PATH_PATTERN,
            "maxLength": TAG_KEY_MAX_LENGTH,
        },
    }


def _parameter_rules(path: str, operation: dict[str, Any], rules: dict[str, Any]) -> None:
    """Path parameters with their rules; no parameter may carry a NUL (config.limits)."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter["name"] in rules:
            parameter["schema"] = dict(rules[parameter["name"]])
        schema = parameter.get("schema", {})
        if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
            schema = schema["items"]
        if (
            path.startswith("/api/v1/")
            and parameter.get("in") in ("path", "query")
            and schema.get("type") == "string"
            and not {"pattern", "enum", "format"} & set(schema)
        ):
            schema["pattern"] = NO_NUL


def document_errors(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Postprocessing hook: the error answers of every operation (see the module doc), and the
    rules of parameters that the views check (_parameter_rules)."""
    rules = _path_parameter_schemas()
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_COMPONENT] = ERROR_SCHEMA
    schemas[MLFLOW_ERROR_COMPONENT] = MLFLOW_ERROR_SCHEMA
    seen: set[tuple[str, str]] = set()
    for path, item in result.get("paths", {}).items():
        component = ERROR_COMPONENT if path.startswith("/api/v1/") else MLFLOW_ERROR_COMPONENT
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            seen.add((method, path))
            _parameter_rules(path, operation, rules)
            statuses = error_statuses(
                method, path, operation, _needs_credentials(operation, result)
            )
            for status in statuses:
                operation["responses"].setdefault(status, _error_response(status, component))
    unknown = (CONFLICTS | NOT_FOUND_ELSEWHERE | MLFLOW_WITHOUT_LOOKUP) - seen
    if unknown:
        raise LookupError(f"config.openapi names operations the schema lacks: {sorted(unknown)}")
    return result


# Python's whitespace (str.isspace, what str.strip removes), spelled out: `\s` means less in
# the ECMA dialect of OpenAPI patterns, and these escapes mean the same in every dialect.
PY_SPACE = (
    r"\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
    r"\u205f\u3000"
)
# What DRF's CharField accepts: never a NUL character (ProhibitNullCharactersValidator), and
# when it may not be blank, something besides whitespace (it strips before checking).
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK = rf"^[^\u0000]*[^{PY_SPACE}\u0000][^\u0000]*$"


def _string_rules(field: serializers.Field, schema: dict[str, Any]) -> None:
    """Add to a field's schema the rules DRF applies that the generated schema leaves out."""
    if isinstance(field, serializers.DictField) and isinstance(
        schema.get("additionalProperties"), dict
    ):
        _string_rules(field.child, schema["additionalProperties"])
    elif isinstance(field, serializers.ListField) and isinstance(schema.get("items"), dict):
        _string_rules(field.child, schema["items"])
    elif (
        isinstance(field, serializers.CharField)
        and schema.get("type") == "string"
        and not {"pattern", "enum", "format"} & set(schema)
    ):
        schema["pattern"] = NO_NUL if field.allow_blank else NOT_BLANK


class InputSerializerExtension(OpenApiSerializerExtension):
    """Input serializers refuse fields they do not know and values of another JSON type
    (config.api.InputSerializer), and DRF's CharField refuses NUL characters and, unless
    blank is allowed, whitespace alone: the schema says so."""

    target_class = "config.api.InputSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        if not type(self.target).__doc__:
            schema.pop("description", None)  # not the base class's docstring
        for name, field in self.target.fields.items():
            if name in schema.get("properties", {}) and not field.read_only:
                _string_rules(field, schema["properties"][name])
        return schema
