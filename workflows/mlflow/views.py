"""Databricks transition requests, comments and `databricks/model-versions/transition-stage`.

The routes name a request by model, version and stage (and, to cancel, its creator) rather than
by id. Approve and reject act on the oldest pending request for that stage that the caller may
decide: with several open (one per requester), each call decides one, as the services' rules
allow. Approve waits, bounded, for the apply task, so a client that approves and then reads the
version sees it applied. `archive_existing_versions` on approve is the approver's choice for a
request made under no policy (Databricks' rules); where a policy governs, the policy's stands.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from rest_framework.request import Request

from accounts.actors import Actor, Source
from config.errors import Conflict, DomainError, NotFound
from registry import selectors as registry_selectors
from registry import services as registry_services
from registry.choices import Stage
from registry.mlflow.http import MlflowApi, Params, invalid, missing
from registry.mlflow.rendering import version_json
from registry.models import ModelVersion
from registry.permissions import model_level, require_level, transition_level
from registry.validation import parse_stage, parse_version_number
from workflows import selectors, services
from workflows.api.views import wait_until_applied
from workflows.choices import Decision, RequestStatus, WorkflowEvent
from workflows.mlflow.activities import (
    activity_json,
    comment_json,
    open_request_activities,
    request_event,
    request_is_pending,
    request_json,
    request_progress,
)
from workflows.models import Comment, TransitionRequest

_ARCHIVING_TARGETS = (Stage.STAGING.value, Stage.PRODUCTION.value)
_MAX_ID = 2**63 - 1


def _actor(request: Request) -> Actor:
    return Actor.of_request(request, Source.MLFLOW)


def _version(request: Request, params: Params) -> ModelVersion:
    """The named version, if the caller may see its model (else RESOURCE_DOES_NOT_EXIST)."""
    actor = _actor(request)
    model = registry_selectors.model_get(actor=actor, name=params.required("name"))
    number = parse_version_number(params.version("version"))
    return registry_selectors.version_get(actor=actor, model=model, version=number)


def _request_stage(params: Params) -> str:
    """A request's target: Staging, Production or Archived (None is where versions start)."""
    stage = parse_stage(params.required("stage"))
    if stage == Stage.NONE:
        raise invalid("stage", stage.value, "a request targets Staging, Production or Archived")
    return stage.value


def _required_boolean(params: Params, name: str) -> bool:
    if not params.has(name):
        raise missing(name)
    return params.boolean(name)


def _comment(params: Params) -> str:
    text = params.string("comment") or ""
    if len(text) > services.COMMENT_MAX_LENGTH:
        raise invalid("comment", text, f"at most {services.COMMENT_MAX_LENGTH} characters")
    return text


def _comment_get(request: Request, params: Params) -> Comment:
    """A comment by its id (a string on the wire, a number accepted), if the caller sees it."""
    raw = params.raw("id")
    if raw is None or raw == "":
        raise missing("id")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise invalid("id", raw, "expected a comment id")
    text = str(raw).strip()
    if not text.isdigit() or int(text) > _MAX_ID:
        raise NotFound(f"Comment {raw} not found")
    return selectors.comment_get(actor=_actor(request), pk=int(text))


def _no_pending(version: ModelVersion, target: str, requests: Any, whose: str = "") -> DomainError:
    """Why there is no pending request to act on: one that is no longer pending (409) or none."""
    latest = requests.order_by("-created_at", "-pk").first()
    subject = f"version {version.version} of '{version.model.name}' to {target}{whose}"
    if latest is None:
        return NotFound(f"No transition request for {subject}.")
    state = "expired" if latest.status == RequestStatus.PENDING else latest.status
    return Conflict(
        f"No pending transition request for {subject}: request #{latest.pk} by "
        f"{latest.requester_name} is {state}, not PENDING."
    )


def _decidable(
    actor: Actor, version: ModelVersion, target: str, decision: Decision
) -> TransitionRequest:
    """The oldest pending request for the target that the actor may decide now.

    When it may decide none, the oldest: the service refuses it with its reason (level,
    self-approval, decided already) and records the refusals that matter. The service checks
    under the row lock, so a concurrent decision still wins once.
    """
    requests = TransitionRequest.objects.select_related("model", "version", "version__model")
    requests = requests.filter(version=version, target=target)
    pending = [
        request
        for request in requests.filter(status=RequestStatus.PENDING).order_by("created_at", "pk")
        if request_is_pending(request)
    ]
    if not pending:
        raise _no_pending(version, target, requests)
    for request in pending:
        if services.reviewer_refusal(request, actor, decision) is None:
            return request
    return pending[0]


def _activity(request: TransitionRequest, type: str, actor: Actor, **kw: Any) -> dict[str, Any]:
    event = request_event(request, type, actor)
    return {"activity": activity_json(event, viewer=actor, request=request, **kw)}


# --- transition requests --------------------------------------------------------------------


class TransitionRequestCreateApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        version = _version(request, params)
        created = services.request_create(
            version=version,
            target=_request_stage(params),
            actor=_actor(request),
            comment=_comment(params),
        )
        return {"request": request_json(created, _actor(request))}


class TransitionRequestApproveApi(MlflowApi):
    """Approve; when this reaches the quorum the transition is applied (waited for, bounded)."""

    def post(self, request: Request, params: Params) -> dict[str, Any]:
        actor = _actor(request)
        version = _version(request, params)
        target = _request_stage(params)
        archive = _required_boolean(params, "archive_existing_versions")
        if archive and target not in _ARCHIVING_TARGETS:
            raise invalid(
                "archive_existing_versions", archive, "only for Staging or Production targets"
            )
        comment = _comment(params)
        found = _decidable(actor, version, target, Decision.APPROVE)
        decided = services.request_approve(
            request=found, actor=actor, comment=comment, archive_existing_versions=archive
        )
        decided = wait_until_applied(decided)
        return _activity(
            decided,
            WorkflowEvent.REQUEST_APPROVAL_RECORDED,
            actor,
            system_comment=request_progress(decided),
        )


class TransitionRequestRejectApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        actor = _actor(request)
        version = _version(request, params)
        target = _request_stage(params)
        comment = _comment(params)
        found = _decidable(actor, version, target, Decision.REJECT)
        decided = services.request_reject(request=found, actor=actor, comment=comment)
        return _activity(decided, WorkflowEvent.REQUEST_REJECTED, actor)


class TransitionRequestDeleteApi(MlflowApi):
    """Cancel the pending request `creator` made (the Databricks SDK sends it as a query)."""

    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        actor = _actor(request)
        version = _version(request, params)
        target = _request_stage(params)
        creator = params.required("creator")
        comment = _comment(params)
        theirs = TransitionRequest.objects.select_related("model", "version").filter(
            Q(requester__username=creator) | Q(requester_name=creator),
            version=version,
            target=target,
        )
        found = theirs.filter(status=RequestStatus.PENDING).order_by("created_at", "pk").first()
        if found is None:
            raise _no_pending(version, target, theirs, f" by {creator}")
        cancelled = services.request_cancel(request=found, actor=actor, comment=comment)
        return _activity(cancelled, WorkflowEvent.REQUEST_CANCELLED, actor)


class TransitionRequestListApi(MlflowApi):
    """The version's open requests, as REQUESTED_TRANSITION activities with the caller's
    available actions."""

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        activities = open_request_activities(
            viewer=_actor(request), version=_version(request, params)
        )
        return {"requests": activities} if activities else {}


# --- comments -------------------------------------------------------------------------------


class CommentCreateApi(MlflowApi):
    def post(self, request: Request, params: Params) -> dict[str, Any]:
        version = _version(request, params)
        comment = services.comment_create(
            version=version, actor=_actor(request), text=params.required("comment")
        )
        return {"comment": comment_json(comment, _actor(request))}


class CommentUpdateApi(MlflowApi):
    def patch(self, request: Request, params: Params) -> dict[str, Any]:
        comment = _comment_get(request, params)
        comment = services.comment_update(
            comment=comment, actor=_actor(request), text=params.required("comment")
        )
        return {"comment": comment_json(comment, _actor(request))}


class CommentDeleteApi(MlflowApi):
    def delete(self, request: Request, params: Params) -> dict[str, Any]:
        services.comment_delete(comment=_comment_get(request, params), actor=_actor(request))
        return {}


# --- Databricks transition ------------------------------------------------------------------


class DatabricksTransitionStageApi(MlflowApi):
    """A direct transition with a comment, answered with the Databricks view of the version.

    Levels as on the MLflow route; a stage a policy guards is refused (PERMISSION_DENIED) with a
    message naming the request flow, for everyone.
    """

    def post(self, request: Request, params: Params) -> dict[str, Any]:
        actor = _actor(request)
        version = _version(request, params)
        stage = parse_stage(params.required("stage"))
        archive = _required_boolean(params, "archive_existing_versions")
        comment = _comment(params)
        require_level(actor, version.model, transition_level(version.stage, stage))
        version = registry_services.version_transition(
            version=version, stage=stage, actor=actor, archive_existing=archive, comment=comment
        )
        version = registry_selectors.version_get(
            actor=actor, model=version.model, version=version.version
        )
        body = version_json(version, with_aliases=True)
        if open_requests := open_request_activities(viewer=actor, version=version):
            body["open_requests"] = open_requests
        body["permission_level"] = model_level(actor, version.model).name
        body["email_subscription_status"] = "DEFAULT"
        return {"model_version_databricks": body}
