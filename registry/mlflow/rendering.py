"""Registry objects as MLflow proto-JSON: snake_case, int64 as numbers, unset fields omitted."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from registry.models import ModelVersion, RegisteredModel

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

_METRIC_FIELDS = (
    "key",
    "value",
    "timestamp",
    "step",
    "dataset_name",
    "dataset_digest",
    "model_id",
    "run_id",
)
_DEPLOYMENT_JOB_FIELDS = ("job_id", "run_id", "job_state", "run_state", "current_task_name")


def millis(value: datetime) -> int:
    """Epoch milliseconds, computed exactly (no float rounding)."""
    return (value - _EPOCH) // _MILLISECOND


def _tags(tags: Iterable[Any]) -> list[dict[str, str]]:
    return [{"key": tag.key, "value": tag.value} for tag in tags]


def _params(params: Any) -> list[dict[str, str]]:
    if not isinstance(params, list):
        return []
    rendered = []
    for param in params:
        if isinstance(param, dict) and param.get("name") is not None:
            item = {"name": str(param["name"])}
            if param.get("value") is not None:
                item["value"] = str(param["value"])
            rendered.append(item)
    return rendered


def _metrics(metrics: Any) -> list[dict[str, Any]]:
    if not isinstance(metrics, list):
        return []
    return [
        {field: metric[field] for field in _METRIC_FIELDS if metric.get(field) is not None}
        for metric in metrics
        if isinstance(metric, dict)
    ]


def _deployment_job_state(state: Any) -> dict[str, Any]:
    if not isinstance(state, dict):
        return {}
    return {field: state[field] for field in _DEPLOYMENT_JOB_FIELDS if state.get(field)}


# The columns a version message needs, as `.values()` names them (see version_row_json).
VERSION_COLUMNS = (
    "id",
    "model_id",
    "model__name",
    "version",
    "created_at",
    "updated_at",
    "created_by_id",
    "stage",
    "description",
    "source",
    "run_id",
    "status",
    "status_message",
    "run_link",
    "mlflow_model_id",
    "params",
    "metrics",
    "deployment_job_state",
)
# The columns a registered-model message needs (see model_row_json).
MODEL_COLUMNS = (
    "id",
    "name",
    "created_at",
    "updated_at",
    "description",
    "deployment_job_id",
    "deployment_job_state",
)


def version_row_json(
    row: dict[str, Any],
    *,
    user: str | None,
    tags: list[dict[str, str]],
    aliases: list[str] | None,
) -> dict[str, Any]:
    """A ModelVersion message from a row of VERSION_COLUMNS, its creator's username, its tags
    (`{key, value}` by key) and, where MLflow fills them in (single reads), its aliases."""
    body: dict[str, Any] = {
        "name": row["model__name"],
        "version": str(row["version"]),
        "creation_timestamp": millis(row["created_at"]),
        "last_updated_timestamp": millis(row["updated_at"]),
    }
    if user is not None:
        body["user_id"] = user
    body["current_stage"] = row["stage"]
    if row["description"]:
        body["description"] = row["description"]
    body["source"] = row["source"]
    if row["run_id"]:
        body["run_id"] = row["run_id"]
    body["status"] = row["status"]
    if row["status_message"]:
        body["status_message"] = row["status_message"]
    if tags:
        body["tags"] = tags
    if row["run_link"]:
        body["run_link"] = row["run_link"]
    if aliases:
        body["aliases"] = aliases
    if row["mlflow_model_id"]:
        body["model_id"] = row["mlflow_model_id"]
    if params := _params(row["params"]):
        body["model_params"] = params
    if metrics := _metrics(row["metrics"]):
        body["model_metrics"] = metrics
    if job_state := _deployment_job_state(row["deployment_job_state"]):
        body["deployment_job_state"] = job_state
    return body


def model_row_json(
    row: dict[str, Any],
    *,
    latest: list[dict[str, Any]],
    tags: list[dict[str, str]],
    aliases: list[dict[str, str]],
) -> dict[str, Any]:
    """A RegisteredModel message from a row of MODEL_COLUMNS, its latest version messages, its
    tags (`{key, value}` by key) and aliases (`{alias, version}` by alias)."""
    body: dict[str, Any] = {
        "name": row["name"],
        "creation_timestamp": millis(row["created_at"]),
        "last_updated_timestamp": millis(row["updated_at"]),
    }
    if row["description"]:
        body["description"] = row["description"]
    if latest:
        body["latest_versions"] = latest
    if tags:
        body["tags"] = tags
    if aliases:
        body["aliases"] = aliases
    if row["deployment_job_id"]:
        body["deployment_job_id"] = row["deployment_job_id"]
    if row["deployment_job_state"]:
        body["deployment_job_state"] = row["deployment_job_state"]
    return body


def version_row(version: ModelVersion) -> dict[str, Any]:
    """A version instance as a row of VERSION_COLUMNS."""
    row = {column: getattr(version, column, None) for column in VERSION_COLUMNS}
    row["model__name"] = version.model.name
    return row


def version_json(version: ModelVersion, *, with_aliases: bool) -> dict[str, Any]:
    """A ModelVersion message; `aliases` only where MLflow fills them in (single reads)."""
    return version_row_json(
        version_row(version),
        user=version.created_by.get_username() if version.created_by is not None else None,
        tags=_tags(version.tags.all()),
        aliases=[alias.alias for alias in version.aliases.all()] if with_aliases else None,
    )


def model_json(model: RegisteredModel, latest: list[ModelVersion]) -> dict[str, Any]:
    """A RegisteredModel message with its latest version per stage (without their aliases)."""
    return model_row_json(
        {column: getattr(model, column) for column in MODEL_COLUMNS},
        latest=[version_json(v, with_aliases=False) for v in latest],
        tags=_tags(model.tags.all()),
        aliases=[
            {"alias": alias.alias, "version": str(alias.version.version)}
            for alias in model.aliases.all()
        ],
    )
