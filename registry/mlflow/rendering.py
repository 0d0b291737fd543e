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


def version_json(version: ModelVersion, *, with_aliases: bool) -> dict[str, Any]:
    """A ModelVersion message; `aliases` only where MLflow fills them in (single reads)."""
    body: dict[str, Any] = {
        "name": version.model.name,
        "version": str(version.version),
        "creation_timestamp": millis(version.created_at),
        "last_updated_timestamp": millis(version.updated_at),
    }
    if version.created_by is not None:
        body["user_id"] = version.created_by.get_username()
    body["current_stage"] = version.stage
    if version.description:
        body["description"] = version.description
    body["source"] = version.source
    if version.run_id:
        body["run_id"] = version.run_id
    body["status"] = version.status
    if version.status_message:
        body["status_message"] = version.status_message
    if tags := _tags(version.tags.all()):
        body["tags"] = tags
    if version.run_link:
        body["run_link"] = version.run_link
    if with_aliases and (aliases := [alias.alias for alias in version.aliases.all()]):
        body["aliases"] = aliases
    if version.mlflow_model_id:
        body["model_id"] = version.mlflow_model_id
    if params := _params(version.params):
        body["model_params"] = params
    if metrics := _metrics(version.metrics):
        body["model_metrics"] = metrics
    if job_state := _deployment_job_state(version.deployment_job_state):
        body["deployment_job_state"] = job_state
    return body


def model_json(model: RegisteredModel, latest: list[ModelVersion]) -> dict[str, Any]:
    """A RegisteredModel message with its latest version per stage (without their aliases)."""
    body: dict[str, Any] = {
        "name": model.name,
        "creation_timestamp": millis(model.created_at),
        "last_updated_timestamp": millis(model.updated_at),
    }
    if model.description:
        body["description"] = model.description
    if latest:
        body["latest_versions"] = [version_json(v, with_aliases=False) for v in latest]
    if tags := _tags(model.tags.all()):
        body["tags"] = tags
    if aliases := [
        {"alias": alias.alias, "version": str(alias.version.version)}
        for alias in model.aliases.all()
    ]:
        body["aliases"] = aliases
    if model.deployment_job_id:
        body["deployment_job_id"] = model.deployment_job_id
    if model.deployment_job_state:
        body["deployment_job_state"] = model.deployment_job_state
    return body
