"""What a subscription hears: which events it matches, and the body it is sent.

Each flavor has its own vocabulary and body:
- native: every history event type (`model_version.stage_transitioned` …), body
  `{id, type, timestamp, data}` with a self-contained `data`;
- mlflow: MLflow's `entity.action` names, body `{entity, action, timestamp, data}`;
- databricks: Databricks' registry-webhook event names, a flat body with `event`, `webhook_id`,
  `event_timestamp`, `model_name`, `version` and per-event fields.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from registry.choices import EventType, Stage
from registry.models import Event
from webhooks.choices import Flavor
from webhooks.models import Subscription

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

REQUEST_CREATED = "transition_request.created"
COMMENT_CREATED = "comment.created"

# MLflow's event names (entity.action), from our event types; their payload data below.
MLFLOW_EVENTS = {
    EventType.MODEL_CREATED: "registered_model.created",
    EventType.VERSION_CREATED: "model_version.created",
    EventType.VERSION_TAG_SET: "model_version_tag.set",
    EventType.VERSION_TAG_DELETED: "model_version_tag.deleted",
    # MLflow reports every alias set as "created", moves included.
    EventType.ALIAS_SET: "model_version_alias.created",
    EventType.ALIAS_DELETED: "model_version_alias.deleted",
}
MLFLOW_EVENT_NAMES = frozenset(MLFLOW_EVENTS.values())

DATABRICKS_EVENT_NAMES = (
    "MODEL_VERSION_CREATED",
    "MODEL_VERSION_TRANSITIONED_STAGE",
    "TRANSITION_REQUEST_CREATED",
    "COMMENT_CREATED",
    "REGISTERED_MODEL_CREATED",
    "MODEL_VERSION_TAG_SET",
    "MODEL_VERSION_TRANSITIONED_TO_STAGING",
    "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
    "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED",
    "TRANSITION_REQUEST_TO_STAGING_CREATED",
    "TRANSITION_REQUEST_TO_PRODUCTION_CREATED",
    "TRANSITION_REQUEST_TO_ARCHIVED_CREATED",
)
_STAGE_WORD = {Stage.STAGING: "STAGING", Stage.PRODUCTION: "PRODUCTION", Stage.ARCHIVED: "ARCHIVED"}


def iso_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stage_word(stage: Any) -> str | None:
    try:
        return _STAGE_WORD.get(Stage.parse(stage))
    except ValueError:
        return None


def _stage_change(event: Event) -> tuple[str | None, str | None]:
    before, after = event.before or {}, event.after or {}
    if event.type == EventType.VERSION_STAGE_TRANSITIONED:
        return before.get("stage"), after.get("stage")
    if event.type == REQUEST_CREATED:
        return after.get("from_stage"), after.get("target")
    return None, None


def databricks_names(event: Event) -> list[str]:
    """The Databricks event names an event triggers, most specific first."""
    if event.type == EventType.VERSION_STAGE_TRANSITIONED:
        word = _stage_word(_stage_change(event)[1])
        specific = [f"MODEL_VERSION_TRANSITIONED_TO_{word}"] if word else []
        return [*specific, "MODEL_VERSION_TRANSITIONED_STAGE"]
    if event.type == REQUEST_CREATED:
        word = _stage_word(_stage_change(event)[1])
        specific = [f"TRANSITION_REQUEST_TO_{word}_CREATED"] if word else []
        return [*specific, "TRANSITION_REQUEST_CREATED"]
    simple = {
        EventType.VERSION_CREATED: "MODEL_VERSION_CREATED",
        EventType.MODEL_CREATED: "REGISTERED_MODEL_CREATED",
        EventType.VERSION_TAG_SET: "MODEL_VERSION_TAG_SET",
        COMMENT_CREATED: "COMMENT_CREATED",
    }
    name = simple.get(event.type)  # type: ignore[call-overload]
    return [name] if name else []


def event_names(flavor: str, event: Event) -> list[str]:
    """The names, in the flavor's vocabulary, under which a subscription can hear the event."""
    if flavor == Flavor.MLFLOW:
        name = MLFLOW_EVENTS.get(event.type)  # type: ignore[call-overload]
        return [name] if name else []
    if flavor == Flavor.DATABRICKS:
        return databricks_names(event)
    return [event.type]


def subscribed_name(subscription: Subscription, event: Event) -> str | None:
    """The name the subscription hears the event under, or None when it is not subscribed."""
    names = event_names(subscription.flavor, event)
    if subscription.all_events:
        return names[0] if names else None
    wanted = set(subscription.events)
    return next((name for name in names if name in wanted), None)


def native_data(event: Event) -> dict[str, Any]:
    """Everything a receiver needs without calling back: the subject, who and how, the change."""
    data: dict[str, Any] = {
        "model": {"id": event.model_id, "name": event.model_name} if event.model_name else None,
        "version": event.version,
        "actor": {
            "name": event.actor_name,
            "token": event.actor_token or None,
            "source": event.source,
        },
        "request_id": event.request_id or None,
        "comment": event.comment or None,
        "before": event.before,
        "after": event.after,
    }
    before, after = event.before or {}, event.after or {}
    if event.type == EventType.VERSION_STAGE_TRANSITIONED:
        data["stage"] = {"from": before.get("stage"), "to": after.get("stage")}
    if event.type in (EventType.ALIAS_SET, EventType.ALIAS_DELETED):
        data["alias"] = {
            "name": after.get("alias") or before.get("alias"),
            "old_version": before.get("version"),
            "new_version": after.get("version"),
        }
    snapshot = after if "tags" in after else before
    if isinstance(snapshot.get("tags"), dict):
        data["tags"] = snapshot["tags"]
    if event.type.startswith("transition_request."):
        data["request"] = after or before
    return data


def native_body(event_type: str, event_id: int | None, when: datetime, data: Any) -> str:
    return _JSON.encode(
        {"id": event_id, "type": event_type, "timestamp": iso_timestamp(when), "data": data}
    )


def mlflow_data(event: Event) -> dict[str, Any]:
    before, after = event.before or {}, event.after or {}
    name = event.model_name
    version = str(event.version) if event.version is not None else None
    if event.type == EventType.MODEL_CREATED:
        return {
            "name": name,
            "tags": after.get("tags", {}),
            "description": after.get("description") or None,
        }
    if event.type == EventType.VERSION_CREATED:
        return {
            "name": name,
            "version": version,
            "source": after.get("source"),
            "run_id": after.get("run_id") or None,
            "tags": after.get("tags", {}),
            "description": after.get("description") or None,
        }
    if event.type == EventType.VERSION_TAG_SET:
        return {"name": name, "version": version, "key": after["key"], "value": after["value"]}
    if event.type == EventType.VERSION_TAG_DELETED:
        return {"name": name, "version": version, "key": before["key"]}
    if event.type == EventType.ALIAS_SET:
        return {"name": name, "alias": after["alias"], "version": str(after["version"])}
    return {"name": name, "alias": before.get("alias")}


def mlflow_body(event_name: str, when: datetime, data: Any) -> str:
    entity, action = event_name.split(".", 1)
    return _JSON.encode(
        {"entity": entity, "action": action, "timestamp": iso_timestamp(when), "data": data}
    )


def databricks_payload(
    event_name: str,
    *,
    webhook_id: str,
    when: datetime,
    model_name: str,
    version: int | None,
    from_stage: str | None = None,
    to_stage: str | None = None,
    tags: list[dict[str, str]] | None = None,
    comment: str | None = None,
    actor: str = "",
) -> str:
    body: dict[str, Any] = {
        "event": event_name,
        "webhook_id": webhook_id,
        "event_timestamp": int(when.timestamp() * 1000),
        "model_name": model_name,
    }
    if version is not None:
        body["version"] = str(version)
    if to_stage is not None:
        body["to_stage"] = to_stage
    if from_stage is not None:
        body["from_stage"] = from_stage
    if tags is not None:
        body["tags"] = tags
    if comment is not None:
        body["comment"] = comment
    what = event_name.replace("_", " ").lower()
    subject = f"{model_name} version {version}" if version is not None else model_name
    by = f" by {actor}" if actor else ""
    body["text"] = f"Registry webhook: {what} for {subject}{by}."
    return _JSON.encode(body)


def databricks_body(subscription: Subscription, event_name: str, event: Event) -> str:
    from_stage, to_stage = _stage_change(event)
    after = event.after or {}
    tags = None
    if event.type == EventType.VERSION_TAG_SET:
        tags = [{"key": after["key"], "value": after["value"]}]
    comment = after.get("text") if event.type == COMMENT_CREATED else None
    return databricks_payload(
        event_name,
        webhook_id=subscription.id.hex,
        when=event.created_at,
        model_name=event.model_name,
        version=event.version,
        from_stage=from_stage,
        to_stage=to_stage,
        tags=tags,
        comment=comment,
        actor=event.actor_name,
    )


def event_body(subscription: Subscription, event_name: str, event: Event) -> str:
    """The exact body the subscription is sent for the event (kept for every retry)."""
    if subscription.flavor == Flavor.MLFLOW:
        return mlflow_body(event_name, event.created_at, mlflow_data(event))
    if subscription.flavor == Flavor.DATABRICKS:
        return databricks_body(subscription, event_name, event)
    return native_body(event_name, event.seq, event.created_at, native_data(event))
