"""Databricks' Activity, TransitionRequest and CommentObject messages, rendered for one viewer.

Every activity is one event of the history, so its `id` is that event's sequence number: stable,
unique across activity types, and the row `/api/v1/events/` shows. Activities are built from the
event (who, when, what, the comment given) and the workflow row it is about (a request's state
and a comment's current text decide the viewer's `available_actions`). Comments keep their own
id, the one the native API uses, since `comments/update` and `comments/delete` take it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.db.models import Prefetch, Q
from django.utils import timezone

from accounts.actors import Actor
from registry import selectors as registry_selectors
from registry.choices import EventType
from registry.mlflow.rendering import millis
from registry.models import Event, ModelVersion
from registry.permissions import Level, model_level
from workflows.choices import OPEN_STATUSES, Decision, RequestStatus, WorkflowEvent
from workflows.models import Comment, Review, TransitionRequest
from workflows.policies import ALIAS_PREFIX
from workflows.selectors import approvals_of
from workflows.services import reviewer_refusal


class ActivityType(StrEnum):
    APPLIED_TRANSITION = "APPLIED_TRANSITION"
    REQUESTED_TRANSITION = "REQUESTED_TRANSITION"
    CANCELLED_REQUEST = "CANCELLED_REQUEST"
    APPROVED_REQUEST = "APPROVED_REQUEST"
    REJECTED_REQUEST = "REJECTED_REQUEST"
    SYSTEM_TRANSITION = "SYSTEM_TRANSITION"
    NEW_COMMENT = "NEW_COMMENT"


class Action(StrEnum):
    APPROVE_TRANSITION_REQUEST = "APPROVE_TRANSITION_REQUEST"
    REJECT_TRANSITION_REQUEST = "REJECT_TRANSITION_REQUEST"
    CANCEL_TRANSITION_REQUEST = "CANCEL_TRANSITION_REQUEST"
    EDIT_COMMENT = "EDIT_COMMENT"
    DELETE_COMMENT = "DELETE_COMMENT"


_REQUEST_ACTIVITIES = {
    WorkflowEvent.REQUEST_CREATED.value: ActivityType.REQUESTED_TRANSITION,
    WorkflowEvent.REQUEST_APPROVAL_RECORDED.value: ActivityType.APPROVED_REQUEST,
    WorkflowEvent.REQUEST_REJECTED.value: ActivityType.REJECTED_REQUEST,
    WorkflowEvent.REQUEST_CANCELLED.value: ActivityType.CANCELLED_REQUEST,
}
FEED_EVENT_TYPES = [
    *_REQUEST_ACTIVITIES,
    WorkflowEvent.COMMENT_CREATED.value,
    EventType.VERSION_STAGE_TRANSITIONED.value,
]
# How registry.services.versions.version_transition notes a version it archives as a side effect.
ARCHIVED_AS_SIDE_EFFECT = "Archived because version "


def activity_type(event: Event) -> ActivityType | None:
    """The Databricks activity an event is, or None when it is none."""
    if event.type == EventType.VERSION_STAGE_TRANSITIONED:
        if event.comment.startswith(ARCHIVED_AS_SIDE_EFFECT):
            return ActivityType.SYSTEM_TRANSITION
        return ActivityType.APPLIED_TRANSITION
    if event.type == WorkflowEvent.COMMENT_CREATED:
        return ActivityType.NEW_COMMENT
    return _REQUEST_ACTIVITIES.get(event.type)


# --- what the viewer may do -----------------------------------------------------------------


def _writes(viewer: Actor) -> bool:
    return viewer.user is not None and not (viewer.token is not None and viewer.token.read_only)


def request_is_pending(request: TransitionRequest) -> bool:
    """PENDING and not past its expiry (the sweeper may not have marked it yet)."""
    return request.status == RequestStatus.PENDING and (
        request.expires_at is None or request.expires_at > timezone.now()
    )


def request_actions(request: TransitionRequest, viewer: Actor) -> list[str]:
    """What the viewer may do with a request now: the services' own rules, asked in advance."""
    if not _writes(viewer) or not request_is_pending(request):
        return []
    actions = [
        action
        for action, decision in (
            (Action.APPROVE_TRANSITION_REQUEST, Decision.APPROVE),
            (Action.REJECT_TRANSITION_REQUEST, Decision.REJECT),
        )
        if reviewer_refusal(request, viewer, decision) is None
    ]
    assert viewer.user is not None  # noqa: S101 - _writes() checked it
    if (
        viewer.user.pk == request.requester_id
        or model_level(viewer, request.model) >= Level.CAN_MANAGE
    ):
        actions.append(Action.CANCEL_TRANSITION_REQUEST)
    return [action.value for action in actions]


def comment_actions(comment: Comment, viewer: Actor) -> list[str]:
    """The author edits and deletes their comment; a CAN_MANAGE holder may delete any."""
    if not _writes(viewer):
        return []
    assert viewer.user is not None  # noqa: S101 - _writes() checked it
    if viewer.user.pk == comment.author_id:
        return [Action.EDIT_COMMENT.value, Action.DELETE_COMMENT.value]
    if model_level(viewer, comment.version.model) >= Level.CAN_MANAGE:
        return [Action.DELETE_COMMENT.value]
    return []


def request_progress(request: TransitionRequest) -> str:
    """Where a request stands, for an activity's `system_comment`."""
    status = request.status
    if status == RequestStatus.PENDING:
        approvals = len(approvals_of(request))
        plural = "s" if request.required_approvals != 1 else ""
        return (
            f"{approvals} of {request.required_approvals} approval{plural}; approvers need "
            f"{request.approver_level}."
        )
    if status == RequestStatus.APPROVED:
        return "Approved; the transition is being applied."
    if status == RequestStatus.APPLIED:
        moved = f" and alias '{request.move_alias}' points at it" if request.move_alias else ""
        return f"Applied: version {request.version.version} is in {request.target}{moved}."
    if status == RequestStatus.FAILED:
        return f"Approved, but it could not be applied: {request.status_reason}"
    return f"The request is {status}."


# --- messages -------------------------------------------------------------------------------


def _set(body: dict[str, Any], key: str, value: Any) -> None:
    """Proto-JSON: unset and empty fields are left out."""
    if value not in (None, "", []):
        body[key] = value


def activity_json(
    event: Event,
    *,
    viewer: Actor,
    request: TransitionRequest | None = None,
    comment: Comment | None = None,
    system_comment: str | None = None,
) -> dict[str, Any]:
    """An Activity: one event, with the viewer's actions on the request or comment it is about."""
    kind = activity_type(event)
    if kind is None:
        raise ValueError(f"event #{event.seq} ({event.type}) is not an activity")
    before, after = event.before or {}, event.after or {}
    text: str = event.comment
    from_stage = to_stage = None
    created = updated = event.created_at
    actions: list[str] = []
    if kind == ActivityType.NEW_COMMENT:
        if comment is not None:
            text, created, updated = comment.text, comment.created_at, comment.updated_at
            actions = comment_actions(comment, viewer)
    elif kind in (ActivityType.APPLIED_TRANSITION, ActivityType.SYSTEM_TRANSITION):
        from_stage, to_stage = before.get("stage"), after.get("stage")
        if kind == ActivityType.SYSTEM_TRANSITION or event.actor_id is None:
            # The registry's own note (an archived side effect, an approved request applied).
            system_comment, text = system_comment or text, ""
    else:
        from_stage, to_stage = after.get("from_stage"), after.get("target")
        if kind == ActivityType.REQUESTED_TRANSITION and request is not None:
            created, updated = request.created_at, request.updated_at
            actions = request_actions(request, viewer)
    body: dict[str, Any] = {"activity_type": kind.value}
    _set(body, "comment", text)
    body["creation_timestamp"] = millis(created)
    _set(body, "from_stage", from_stage)
    body["id"] = str(event.seq)
    body["last_updated_timestamp"] = millis(updated)
    _set(body, "system_comment", system_comment)
    _set(body, "to_stage", to_stage)
    body["user_id"] = event.actor_name
    _set(body, "available_actions", actions)
    return body


def request_json(request: TransitionRequest, viewer: Actor) -> dict[str, Any]:
    """A TransitionRequest message (what `transition-requests/create` answers)."""
    body: dict[str, Any] = {}
    _set(body, "available_actions", request_actions(request, viewer))
    _set(body, "comment", request.comment)
    body["creation_timestamp"] = millis(request.created_at)
    body["to_stage"] = request.target
    body["user_id"] = request.requester_name
    return body


def comment_json(comment: Comment, viewer: Actor) -> dict[str, Any]:
    """A CommentObject message."""
    body: dict[str, Any] = {}
    _set(body, "available_actions", comment_actions(comment, viewer))
    body["comment"] = comment.text
    body["creation_timestamp"] = millis(comment.created_at)
    body["id"] = str(comment.pk)
    body["last_updated_timestamp"] = millis(comment.updated_at)
    body["user_id"] = comment.author_name
    return body


# --- reads ----------------------------------------------------------------------------------


def _requests() -> Any:
    return TransitionRequest.objects.select_related(
        "model", "version", "version__model"
    ).prefetch_related(Prefetch("reviews", queryset=Review.objects.order_by("created_at")))


def request_event(request: TransitionRequest, type: str, actor: Actor | None = None) -> Event:
    """The latest event of `type` about a request (by `actor`, when given)."""
    events = Event.objects.filter(
        type=type, model_id=request.model_id, version=request.version.version, after__id=request.pk
    )
    if actor is not None:
        events = events.filter(actor_id=actor.user_id)
    return events.latest("seq")


def open_request_activities(*, viewer: Actor, version: ModelVersion) -> list[dict[str, Any]]:
    """The open stage requests of a version, oldest first, as REQUESTED_TRANSITION activities.

    Open is PENDING and not expired, or APPROVED and not applied yet (the apply task has not
    finished); requests for protected aliases are not stage transitions and are left out.
    """
    requests = list(
        _requests()
        .filter(version=version, status__in=OPEN_STATUSES)
        .exclude(target__startswith=ALIAS_PREFIX)
        .filter(
            Q(status=RequestStatus.APPROVED)
            | Q(expires_at__isnull=True)
            | Q(expires_at__gt=timezone.now())
        )
        .order_by("created_at", "pk")
    )
    if not requests:
        return []
    created = {
        event.after.get("id"): event
        for event in Event.objects.filter(
            type=WorkflowEvent.REQUEST_CREATED, model_id=version.model_id, version=version.version
        )
        if isinstance(event.after, dict)
    }
    return [
        activity_json(
            created[request.pk],
            viewer=viewer,
            request=request,
            system_comment=request_progress(request),
        )
        for request in requests
        if request.pk in created
    ]


def version_activities(*, viewer: Actor, version: ModelVersion) -> list[dict[str, Any]]:
    """Everything that happened to a version as Databricks activities, oldest first.

    Requests, decisions, cancellations, comments still there (with their current text) and stage
    transitions (SYSTEM_TRANSITION for versions archived as a side effect). Requests for
    protected aliases are not stage transitions and are left out.
    """
    events = registry_selectors.event_list(
        viewer=viewer, model=version.model.name, version=version.version, types=FEED_EVENT_TYPES
    )
    requests = {request.pk: request for request in _requests().filter(version=version)}
    comments = {
        comment.pk: comment
        for comment in Comment.objects.filter(version=version).select_related("version__model")
    }
    activities = []
    for event in events:
        subject = (event.after or {}).get("id")
        if event.type == WorkflowEvent.COMMENT_CREATED:
            if subject not in comments:
                continue  # deleted since: gone from the feed, kept in the history
            activities.append(activity_json(event, viewer=viewer, comment=comments[subject]))
        elif event.type in _REQUEST_ACTIVITIES:
            if str((event.after or {}).get("target", "")).startswith(ALIAS_PREFIX):
                continue
            activities.append(activity_json(event, viewer=viewer, request=requests.get(subject)))
        else:
            activities.append(activity_json(event, viewer=viewer))
    return activities
