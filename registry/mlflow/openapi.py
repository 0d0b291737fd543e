"""The MLflow Model Registry routes in the OpenAPI schema (a drf-spectacular postprocessing hook).

The MLflow views are plain Django views with MLflow's own conventions (registry.mlflow.http), so
drf-spectacular does not see them; their operations are written here, from the protocol
(reference §2.3) and the rules the views apply. Only `/api/2.0/mlflow/` is listed: the same
routes answer under `/ajax-api/2.0/mlflow/` and `/api/2.0/preview/mlflow/`. DELETE arguments are
listed as query parameters (the views also read them from a JSON body, as the mlflow client sends
them; OpenAPI 3.0 gives DELETE no body). Errors ({"error_code", "message"}) are added with every
other operation's by config.openapi.document_errors.
"""

from __future__ import annotations

from typing import Any

from config.openapi import NO_NUL
from registry.mlflow.search import MODELS_MAX_RESULTS, VERSIONS_MAX_RESULTS
from registry.models import (
    ALIAS_MAX_LENGTH,
    NAME_MAX_LENGTH,
    TAG_KEY_MAX_LENGTH,
    TAG_VALUE_MAX_LENGTH,
)
from registry.validation import (
    ALIAS_PATTERN,
    MODEL_NAME_PATTERN,
    RUN_ID_MAX_LENGTH,
    SOURCE_PATTERN,
    TAG_KEY_PATTERN,
)

PREFIX = "/api/2.0/mlflow/"
TAG = "mlflow"
STAGES = ["None", "Staging", "Production", "Archived"]
DEPLOYMENT_JOB_STATES = ["NOT_SET_UP", "CONNECTED", "NOT_FOUND", "REQUIRED_PARAMETERS_CHANGED"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_TEXT = {"type": "string", "pattern": NO_NUL}
_MILLIS = {"type": "integer", "format": "int64", "description": "Epoch milliseconds."}
_TAG = {
    "type": "object",
    "properties": {
        "key": {"type": "string", "pattern": TAG_KEY_PATTERN, "maxLength": TAG_KEY_MAX_LENGTH},
        "value": {
            "type": "string",
            "pattern": NO_NUL,
            "maxLength": TAG_VALUE_MAX_LENGTH,
            "nullable": True,
        },
    },
    "required": ["key"],
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "MlflowTag": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
        "required": ["key", "value"],
    },
    "MlflowModelVersion": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string", "description": "A number, as a string."},
            "creation_timestamp": _MILLIS,
            "last_updated_timestamp": _MILLIS,
            "user_id": {"type": "string"},
            "current_stage": {"type": "string", "enum": STAGES},
            "description": {"type": "string"},
            "source": {"type": "string"},
            "run_id": {"type": "string"},
            "status": {"type": "string", "enum": ["READY"]},
            "status_message": {"type": "string"},
            "tags": {"type": "array", "items": _ref("MlflowTag")},
            "run_link": {"type": "string"},
            "aliases": {
                "type": "array",
                "items": {"type": "string"},
                "description": "On single reads only, as MLflow.",
            },
            "model_id": {"type": "string"},
            "model_params": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                    "required": ["name"],
                },
            },
            "model_metrics": {"type": "array", "items": {"type": "object"}},
            "deployment_job_state": {"type": "object"},
        },
        "required": [
            "name",
            "version",
            "creation_timestamp",
            "last_updated_timestamp",
            "current_stage",
            "source",
            "status",
        ],
    },
    "MlflowRegisteredModel": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "creation_timestamp": _MILLIS,
            "last_updated_timestamp": _MILLIS,
            "description": {"type": "string"},
            "latest_versions": {
                "type": "array",
                "items": _ref("MlflowModelVersion"),
                "description": "The latest version in each stage.",
            },
            "tags": {"type": "array", "items": _ref("MlflowTag")},
            "aliases": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"alias": {"type": "string"}, "version": {"type": "string"}},
                    "required": ["alias", "version"],
                },
            },
            "deployment_job_id": {"type": "string"},
            "deployment_job_state": {"type": "string", "enum": DEPLOYMENT_JOB_STATES},
        },
        "required": ["name", "creation_timestamp", "last_updated_timestamp"],
    },
}

# --- arguments ------------------------------------------------------------------------------

# A model named in a lookup: unknown (or not visible) is RESOURCE_DOES_NOT_EXIST.
NAME = {"type": "string", "minLength": 1, "pattern": NO_NUL, "description": "A model's name."}
NEW_NAME = {"type": "string", "pattern": MODEL_NAME_PATTERN, "maxLength": NAME_MAX_LENGTH}
# A version number: a string on the wire; a JSON number works too.
VERSION_STRING = {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"}
VERSION = {"oneOf": [VERSION_STRING, {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}]}
KEY = {"type": "string", "pattern": TAG_KEY_PATTERN, "maxLength": TAG_KEY_MAX_LENGTH}
VALUE = {"type": "string", "pattern": NO_NUL, "maxLength": TAG_VALUE_MAX_LENGTH}
ALIAS = {"type": "string", "pattern": ALIAS_PATTERN, "maxLength": ALIAS_MAX_LENGTH}
STAGE = {"type": "string", "enum": STAGES, "description": "Any case is accepted."}
FLAG = {"oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}
TAGS = {
    "oneOf": [{"type": "array", "items": _TAG}, _TAG],
    "description": "`{key, value}` objects (one alone is taken as a list of one).",
}
FILTER = {
    "type": "string",
    "pattern": NO_NUL,
    "description": "MLflow's search grammar, e.g. `name LIKE 'fraud%' AND tag.team = 'ml'`.",
}
PAGE_TOKEN = {
    "type": "string",
    "pattern": NO_NUL,
    "description": "The `next_page_token` of the previous page.",
}


def _order_by(keys: list[str]) -> dict[str, Any]:
    names = "|".join(keys)
    return {
        "type": "array",
        "items": {
            "type": "string",
            "pattern": rf"^ *(?:attributes?\.)?(?:{names}|`(?:{names})`)(?: +(?:[Aa][Ss][Cc]|"
            r"[Dd][Ee][Ss][Cc]))? *$",
        },
        "description": "`<key> [ASC|DESC]` clauses.",
    }


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if required:
        parameter["required"] = True
    if schema.get("type") == "array":
        parameter.update(style="form", explode=True)
    return parameter


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    nullable = {**schema, "nullable": True}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]  # OpenAPI 3.0.3: null must be listed too
    return nullable


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    # Proto-JSON: null is the same as absent.
    optional = {
        name: schema if name in required else _nullable(schema)
        for name, schema in properties.items()
    }
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": optional,
                    "required": required,
                    "description": "Fields MLflow does not know are ignored, as by MLflow; no "
                    "key or value may hold a NUL character, not even in those.",
                }
            }
        },
    }


def _answer(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"description": "", "content": {"application/json": {"schema": schema}}}


EMPTY = _answer({})
MODEL = _answer({"registered_model": _ref("MlflowRegisteredModel")}, ["registered_model"])
VERSION_ANSWER = _answer({"model_version": _ref("MlflowModelVersion")}, ["model_version"])


def _operation(
    operation_id: str,
    summary: str,
    answer: dict[str, Any],
    *,
    query: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [TAG],
        "responses": {"200": answer},
    }
    if query:
        operation["parameters"] = query
    if body:
        operation["requestBody"] = body
    return operation


def _as_query(properties: dict[str, Any], required: list[str]) -> list[dict[str, Any]]:
    return [_query(name, schema, required=name in required) for name, schema in properties.items()]


def _get_or_delete(
    method: str, operation_id: str, summary: str, answer: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    required = [name for name in fields if name in ("name", "version", "key", "alias")]
    return {method: _operation(operation_id, summary, answer, query=_as_query(fields, required))}


def _write(
    method: str, operation_id: str, summary: str, answer: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    required = [
        name
        for name in fields
        if name in ("name", "new_name", "version", "key", "alias", "source", "stage")
    ]
    return {method: _operation(operation_id, summary, answer, body=_body(fields, required))}


_MODEL_FIELDS = {
    "description": _TEXT,
    "deployment_job_id": {"type": "string", "pattern": NO_NUL, "maxLength": 255},
    "deployment_job_state": {"type": "string", "enum": ["", *DEPLOYMENT_JOB_STATES]},
}
_NAME_VERSION = {"name": NAME, "version": VERSION}
_NAME_VERSION_QUERY = {"name": NAME, "version": VERSION_STRING}


def mlflow_paths() -> dict[str, dict[str, Any]]:
    """The registry routes of the MLflow protocol, by path."""
    models_search = {
        "filter": FILTER,
        "max_results": {"type": "integer", "minimum": 0, "maximum": MODELS_MAX_RESULTS},
        "order_by": _order_by(["name", "timestamp", "last_updated_timestamp"]),
        "page_token": PAGE_TOKEN,
    }
    versions_search = {
        "filter": FILTER,
        "max_results": {"type": "integer", "minimum": 1, "maximum": VERSIONS_MAX_RESULTS},
        "order_by": _order_by(
            ["name", "version_number", "creation_timestamp", "last_updated_timestamp"]
        ),
        "page_token": PAGE_TOKEN,
    }
    models_page = _answer(
        {
            "registered_models": {"type": "array", "items": _ref("MlflowRegisteredModel")},
            "next_page_token": {"type": "string"},
        }
    )
    versions = _answer({"model_versions": {"type": "array", "items": _ref("MlflowModelVersion")}})
    versions_page = _answer(
        {
            "model_versions": {"type": "array", "items": _ref("MlflowModelVersion")},
            "next_page_token": {"type": "string"},
        }
    )
    latest_fields = {"name": NAME, "stages": {"type": "array", "items": STAGE}}
    alias_read = _get_or_delete(
        "get",
        "mlflow_alias_get",
        "The version an alias points at (ETag; 304 with a matching If-None-Match).",
        VERSION_ANSWER,
        {"name": NAME, "alias": {"type": "string", "minLength": 1, "pattern": NO_NUL}},
    )
    alias_read["get"]["parameters"].append(
        {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
    )
    alias_read["get"]["responses"]["304"] = {"description": "Not modified."}
    paths = {
        "registered-models/create": _write(
            "post",
            "mlflow_registered_model_create",
            "Create a registered model.",
            MODEL,
            {"name": NEW_NAME, "tags": TAGS, **_MODEL_FIELDS},
        ),
        "registered-models/get": _get_or_delete(
            "get", "mlflow_registered_model_get", "Get a registered model.", MODEL, {"name": NAME}
        ),
        "registered-models/update": _write(
            "patch",
            "mlflow_registered_model_update",
            "Set the description (absent: cleared, as MLflow) or the deployment job.",
            MODEL,
            {"name": NAME, **_MODEL_FIELDS},
        ),
        "registered-models/rename": _write(
            "post",
            "mlflow_registered_model_rename",
            "Rename a registered model.",
            MODEL,
            {"name": NAME, "new_name": NEW_NAME},
        ),
        "registered-models/delete": _get_or_delete(
            "delete",
            "mlflow_registered_model_delete",
            "Delete a registered model.",
            EMPTY,
            {"name": NAME},
        ),
        "registered-models/search": _get_or_delete(
            "get",
            "mlflow_registered_models_search",
            "Search registered models.",
            models_page,
            models_search,
        ),
        "registered-models/get-latest-versions": {
            **_write(
                "post",
                "mlflow_latest_versions",
                "The latest version in each stage asked (every stage when none is).",
                versions,
                latest_fields,
            ),
            **_get_or_delete(
                "get",
                "mlflow_latest_versions_get",
                "The latest version in each stage asked (every stage when none is).",
                versions,
                latest_fields,
            ),
        },
        "registered-models/set-tag": _write(
            "post",
            "mlflow_registered_model_set_tag",
            "Set a tag of a registered model.",
            EMPTY,
            {"name": NAME, "key": KEY, "value": VALUE},
        ),
        "registered-models/delete-tag": _get_or_delete(
            "delete",
            "mlflow_registered_model_delete_tag",
            "Delete a tag of a registered model (a missing one too).",
            EMPTY,
            {"name": NAME, "key": {"type": "string", "minLength": 1, "pattern": NO_NUL}},
        ),
        "registered-models/alias": {
            **_write(
                "post",
                "mlflow_alias_set",
                "Point an alias at a version (it moves if it exists).",
                EMPTY,
                {"name": NAME, "alias": ALIAS, "version": VERSION},
            ),
            **alias_read,
            **_get_or_delete(
                "delete",
                "mlflow_alias_delete",
                "Delete an alias (a missing one too).",
                EMPTY,
                {"name": NAME, "alias": {"type": "string", "minLength": 1, "pattern": NO_NUL}},
            ),
        },
        "model-versions/create": _write(
            "post",
            "mlflow_model_version_create",
            "Create a version (numbered by the server).",
            VERSION_ANSWER,
            {
                "name": NAME,
                "source": {"type": "string", "pattern": SOURCE_PATTERN},
                "run_id": {"type": "string", "pattern": NO_NUL, "maxLength": RUN_ID_MAX_LENGTH},
                "run_link": _TEXT,
                "description": _TEXT,
                "tags": TAGS,
                "model_id": {"type": "string", "pattern": NO_NUL, "maxLength": 64},
            },
        ),
        "model-versions/get": _get_or_delete(
            "get",
            "mlflow_model_version_get",
            "Get a version.",
            VERSION_ANSWER,
            _NAME_VERSION_QUERY,
        ),
        "model-versions/update": _write(
            "patch",
            "mlflow_model_version_update",
            "Set a version's description (absent: cleared, as MLflow).",
            VERSION_ANSWER,
            {**_NAME_VERSION, "description": _TEXT},
        ),
        "model-versions/transition-stage": _write(
            "post",
            "mlflow_model_version_transition_stage",
            "Move a version to a stage (refused when a policy asks for approvals).",
            VERSION_ANSWER,
            {
                **_NAME_VERSION,
                "stage": STAGE,
                "archive_existing_versions": {
                    **FLAG,
                    "description": "Staging and Production targets only.",
                },
            },
        ),
        "model-versions/delete": _get_or_delete(
            "delete",
            "mlflow_model_version_delete",
            "Delete a version (its number is never reused).",
            EMPTY,
            _NAME_VERSION_QUERY,
        ),
        "model-versions/search": _get_or_delete(
            "get",
            "mlflow_model_versions_search",
            "Search versions.",
            versions_page,
            versions_search,
        ),
        "model-versions/get-download-uri": _get_or_delete(
            "get",
            "mlflow_model_version_download_uri",
            "Where a version's artifacts are.",
            _answer({"artifact_uri": {"type": "string"}}, ["artifact_uri"]),
            _NAME_VERSION_QUERY,
        ),
        "model-versions/set-tag": _write(
            "post",
            "mlflow_model_version_set_tag",
            "Set a tag of a version.",
            EMPTY,
            {**_NAME_VERSION, "key": KEY, "value": VALUE},
        ),
        "model-versions/delete-tag": _get_or_delete(
            "delete",
            "mlflow_model_version_delete_tag",
            "Delete a tag of a version (a missing one too).",
            EMPTY,
            {
                **_NAME_VERSION_QUERY,
                "key": {"type": "string", "minLength": 1, "pattern": NO_NUL},
            },
        ),
    }
    return {PREFIX + route: operations for route, operations in paths.items()}


def add_mlflow_routes(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Postprocessing hook: the MLflow registry routes and their components, authenticated the
    way every DRF route is (the views run the same authentication classes)."""
    security = next(
        (
            operation["security"]
            for item in result.get("paths", {}).values()
            for operation in item.values()
            if isinstance(operation, dict) and "security" in operation
        ),
        None,
    )
    for path, operations in mlflow_paths().items():
        if security is not None:
            for operation in operations.values():
                operation["security"] = security
        result.setdefault("paths", {})[path] = operations
    result.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    tags = result.setdefault("tags", [])
    tags.append(
        {
            "name": TAG,
            "description": "The MLflow Model Registry REST protocol, also under "
            "/ajax-api/2.0/mlflow/ and /api/2.0/preview/mlflow/; errors as "
            '{"error_code", "message"}.',
        }
    )
    return result
