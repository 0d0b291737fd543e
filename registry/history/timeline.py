"""Point-in-time reads, reconstructed from the events alone.

"What did `production` of fraud-scorer point at on 3 March?" is answered by replaying the
model's events up to that moment: the snapshots that model_version.created / stage_transitioned
/ deleted, model_version_alias.set / deleted and registered_model.created / renamed / deleted
record (registry/services/) hold everything needed. Nothing here reads the current tables for
the answer, so it is right for deleted versions, deleted models and renamed models alike.

The events of one transaction are contiguous in seq (the chain head's row lock is held from the
first append to the commit), so an alias moved by applying a transition request is immediately
followed by that request's `transition_request.applied` event: that is how a move is tied to the
request, its requester, its approvers and their comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from accounts.actors import Actor
from config.errors import NotFound
from registry.choices import EventType
from registry.events import event_timestamp
from registry.models import Event, RegisteredModel
from registry.permissions import Level, require_level, sees_every_model

_NAME_EVENTS = (EventType.MODEL_CREATED, EventType.MODEL_RENAMED, EventType.MODEL_DELETED)
_STATE_EVENTS = (
    *_NAME_EVENTS,
    EventType.MODEL_UPDATED,
    EventType.MODEL_TAG_SET,
    EventType.MODEL_TAG_DELETED,
    EventType.VERSION_CREATED,
    EventType.VERSION_UPDATED,
    EventType.VERSION_DELETED,
    EventType.VERSION_STAGE_TRANSITIONED,
    EventType.VERSION_TAG_SET,
    EventType.VERSION_TAG_DELETED,
    EventType.ALIAS_SET,
    EventType.ALIAS_DELETED,
)
_ALIAS_EVENTS = (EventType.ALIAS_SET, EventType.ALIAS_DELETED)
REQUEST_APPLIED = "transition_request.applied"  # workflows' event types, by name: no import
REQUEST_CREATED = "transition_request.created"
REQUEST_APPROVAL = "transition_request.approval_recorded"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _name_at(model_id: int, at: datetime | None) -> tuple[str | None, bool]:
    """(name, existed) of a model at `at` (now when None), from its naming events."""
    events = Event.objects.filter(model_id=model_id, type__in=_NAME_EVENTS)
    if at is not None:
        events = events.filter(created_at__lte=at)
    name, exists = None, False
    for type, after in events.order_by("seq").values_list("type", "after"):
        if type == EventType.MODEL_DELETED:
            exists = False
        else:
            name, exists = _dict(after).get("name", name), True
    return name, exists


def history_model_resolve(*, viewer: Actor, name: str, at: datetime | None = None) -> int:
    """The id of the model `name` designates at `at`, if the viewer may read its history.

    The model that bore the name at that moment, else the model bearing it now (asked under
    its new name about a time before a rename). A deleted model's history is for registry-wide
    readers only: the per-model grants went with it. NotFound otherwise, as for any model the
    viewer may not see.
    """
    current = RegisteredModel.objects.filter(name=name).first()
    candidates: set[int] = {
        pk
        for pk in Event.objects.filter(
            Q(type__in=_NAME_EVENTS, model_name=name)
            | Q(type=EventType.MODEL_RENAMED, before__name=name)
        )
        .values_list("model_id", flat=True)
        .distinct()
        if pk is not None
    }
    model_id = None
    if at is not None:
        for candidate in sorted(candidates, reverse=True):
            then, existed = _name_at(candidate, at)
            if existed and then == name:
                model_id = candidate
                break
    if model_id is None and current is not None:
        model_id = current.pk
    if model_id is None and candidates:
        model_id = max(candidates)  # the latest model that bore it (renamed or deleted since)
    if model_id is None:
        raise NotFound(f"Registered Model with name={name} not found")
    model = current if current is not None and current.pk == model_id else None
    model = model or RegisteredModel.objects.filter(pk=model_id).first()
    if model is not None:
        require_level(viewer, model, Level.CAN_READ)
    elif not sees_every_model(viewer):
        raise NotFound(f"Registered Model with name={name} not found")
    return model_id


@dataclass
class _State:
    exists: bool = False
    name: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    deleted_versions: list[int] = field(default_factory=list)
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    time: str | None = None


def _apply(state: _State, event: Event) -> None:
    before, after = _dict(event.before), _dict(event.after)
    when = event_timestamp(event.created_at)
    number = event.version
    version = state.versions.get(number) if number is not None else None
    match event.type:
        case EventType.MODEL_CREATED:
            state.exists, state.created_at = True, when
            state.name = after.get("name", event.model_name)
            state.description = after.get("description", "")
            state.tags = dict(_dict(after.get("tags")))
            state.versions, state.aliases, state.deleted_versions = {}, {}, []
        case EventType.MODEL_RENAMED:
            state.name = after.get("name", event.model_name)
        case EventType.MODEL_UPDATED:
            state.description = after.get("description", state.description)
        case EventType.MODEL_DELETED:
            state.exists = False
        case EventType.MODEL_TAG_SET:
            state.tags[after.get("key", "")] = after.get("value", "")
        case EventType.MODEL_TAG_DELETED:
            state.tags.pop(before.get("key", ""), None)
        case EventType.VERSION_CREATED if number is not None:
            state.versions[number] = {
                "version": number,
                "stage": after.get("stage", "None"),
                "stage_since": when,
                "source": after.get("source", ""),
                "run_id": after.get("run_id", ""),
                "description": after.get("description", ""),
                "tags": dict(_dict(after.get("tags"))),
                "created_at": when,
                "created_by": event.actor_name,
            }
        case EventType.VERSION_UPDATED if version is not None:
            version["description"] = after.get("description", version["description"])
        case EventType.VERSION_STAGE_TRANSITIONED if version is not None:
            version["stage"], version["stage_since"] = after.get("stage", version["stage"]), when
        case EventType.VERSION_TAG_SET if version is not None:
            version["tags"][after.get("key", "")] = after.get("value", "")
        case EventType.VERSION_TAG_DELETED if version is not None:
            version["tags"].pop(before.get("key", ""), None)
        case EventType.VERSION_DELETED if number is not None:
            state.versions.pop(number, None)
            state.deleted_versions.append(number)
            # Its aliases went with it (recorded as alias deletions first; this is a backstop).
            for alias in [a for a, p in state.aliases.items() if p["version"] == number]:
                del state.aliases[alias]
        case EventType.ALIAS_SET:
            state.aliases[after.get("alias", "")] = {
                "alias": after.get("alias", ""),
                "version": after.get("version", number),
                "since": when,
                "set_by": event.actor_name,
                "seq": event.seq,
            }
        case EventType.ALIAS_DELETED:
            state.aliases.pop(before.get("alias", ""), None)
    state.seq, state.time = event.seq, when


def model_state_at(*, viewer: Actor, name: str, at: datetime) -> dict[str, Any]:
    """The model `name` as it was at `at`: its versions with their stages, and its aliases."""
    model_id = history_model_resolve(viewer=viewer, name=name, at=at)
    state = _State()
    events = (
        Event.objects.filter(model_id=model_id, type__in=_STATE_EVENTS, created_at__lte=at)
        .order_by("seq")
        .only("seq", "type", "created_at", "actor_name", "model_name", "version", "before", "after")
    )
    for event in events.iterator(chunk_size=2000):
        _apply(state, event)
    if not state.exists:
        raise NotFound(f"Registered model '{name}' did not exist at {event_timestamp(at)}.")
    aliases_of: dict[int, list[str]] = {}
    for alias in sorted(state.aliases):
        aliases_of.setdefault(state.aliases[alias]["version"], []).append(alias)
    return {
        "at": event_timestamp(at),
        "as_of": {"seq": state.seq, "time": state.time},
        "model": {
            "id": model_id,
            "name": state.name,
            "description": state.description,
            "tags": dict(sorted(state.tags.items())),
            "created_at": state.created_at,
        },
        "versions": [
            {**state.versions[number], "aliases": aliases_of.get(number, [])}
            for number in sorted(state.versions)
        ],
        "aliases": [state.aliases[alias] for alias in sorted(state.aliases)],
        "deleted_versions": sorted(state.deleted_versions),
    }


def alias_events(*, viewer: Actor, name: str, alias: str) -> QuerySet:
    """Every set and deletion of one alias of a model, oldest first."""
    model_id = history_model_resolve(viewer=viewer, name=name)
    return Event.objects.filter(model_id=model_id, type__in=_ALIAS_EVENTS).filter(
        Q(after__alias=alias) | Q(before__alias=alias)
    )


def _actor(event: Event) -> dict[str, Any]:
    return {
        "id": event.actor_id,
        "name": event.actor_name,
        "token": event.actor_token,
        "source": event.source,
        "client_ip": event.client_ip,
    }


def _requests(model_id: int, ids: set[int]) -> dict[int, dict[str, Any]]:
    """What the history says about some transition requests: who asked, who approved, why."""
    found: dict[int, dict[str, Any]] = {}
    events = Event.objects.filter(
        model_id=model_id, type__startswith="transition_request.", after__id__in=sorted(ids)
    ).order_by("seq")
    for event in events:
        after = _dict(event.after)
        request = found.setdefault(
            after["id"],
            {
                "id": after["id"],
                "target": after.get("target"),
                "version": after.get("version"),
                "requested_by": after.get("requester"),
                "requested_at": None,
                "comment": "",
                "approvals": [],
                "applied_seq": None,
            },
        )
        if event.type == REQUEST_CREATED:
            request["requested_at"] = event_timestamp(event.created_at)
            request["comment"] = event.comment
            request["request_id"] = event.request_id
        elif event.type == REQUEST_APPROVAL:
            request["approvals"].append(
                {
                    "by": event.actor_name,
                    "at": event_timestamp(event.created_at),
                    "comment": event.comment,
                    "seq": event.seq,
                }
            )
        elif event.type == REQUEST_APPLIED:
            request["applied_seq"] = event.seq
    return found


def alias_moves(events: list[Event]) -> list[dict[str, Any]]:
    """Each alias event as a move: from and to which version, who, when, through which request."""
    if not events:
        return []
    model_id = events[0].model_id
    applied = {
        event.seq - 1: _dict(event.after).get("id")
        for event in Event.objects.filter(
            model_id=model_id, type=REQUEST_APPLIED, seq__in=[e.seq + 1 for e in events]
        ).only("seq", "after")
    }
    requests = (
        _requests(model_id, {rid for rid in applied.values() if rid is not None})
        if model_id is not None
        else {}
    )
    moves = []
    for event in events:
        before, after = _dict(event.before), _dict(event.after)
        request_id = applied.get(event.seq)
        moves.append(
            {
                "seq": event.seq,
                "time": event_timestamp(event.created_at),
                "action": "set" if event.type == EventType.ALIAS_SET else "deleted",
                "from_version": before.get("version"),
                "to_version": after.get("version"),
                "actor": _actor(event),
                "request_id": event.request_id,
                "comment": event.comment,
                "via_request": requests.get(request_id) if request_id is not None else None,
            }
        )
    return moves
