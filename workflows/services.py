"""Transition requests, reviews and comments: every write of the approval workflow.

Lock order, as in the registry: the model row, then the request row, then the event chain head.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.actors import Actor, Source
from config.errors import AlreadyExists, Conflict, DomainError, InvalidParameter, PermissionDenied
from registry import services as registry_services
from registry.choices import Stage
from registry.events import event_record
from registry.models import ModelVersion
from registry.permissions import Level, model_level, require_level, require_writer
from registry.refusals import Refusal, refusal_note, refusals_recorded
from registry.services.models import model_lock
from workflows.choices import Decision, RequestStatus, WorkflowEvent
from workflows.models import Comment, Review, TransitionRequest
from workflows.policies import ALIAS_PREFIX, parse_target, rules_for

logger = logging.getLogger(__name__)
COMMENT_MAX_LENGTH = 10_000


def request_snapshot(request: TransitionRequest) -> dict[str, Any]:
    return {
        "id": request.pk,
        "model": request.model.name,
        "version": request.version.version,
        "target": request.target,
        "from_stage": request.from_stage,
        "status": request.status,
        "requester": request.requester_name,
        "required_approvals": request.required_approvals,
        "approver_level": request.approver_level,
        "approvals": sorted(
            review.reviewer_name
            for review in request.reviews.all()
            if review.decision == Decision.APPROVE
        ),
        "reason": request.status_reason,
    }


def _record(
    type: str,
    request: TransitionRequest,
    actor: Actor,
    comment: str = "",
    before: dict[str, Any] | None = None,
) -> None:
    event_record(
        type=type,
        actor=actor,
        model=request.model,
        version=request.version.version,
        before=before,
        after=request_snapshot(request),
        comment=comment,
    )


def _refused_review(
    error: DomainError,
    request: TransitionRequest,
    actor: Actor,
    decision: Decision,
    comment: str,
) -> DomainError:
    """Note a review the rules refuse (level, self-approval, read-only token, missing tags) for
    the history; deciding twice or on a closed request is not a refusal worth keeping."""
    refused = (
        WorkflowEvent.REQUEST_APPROVAL_REFUSED
        if decision == Decision.APPROVE
        else WorkflowEvent.REQUEST_REJECTION_REFUSED
    )
    return refusal_note(
        error,
        Refusal(
            type=refused,
            actor=actor,
            model=request.model,
            version=request.version.version,
            before=request_snapshot(request),
            after={
                "id": request.pk,
                "target": request.target,
                "from_stage": request.from_stage,
                "decision": decision.value,
            },
            comment=comment,
        ),
    )


def _text(value: str | None, field: str = "comment") -> str:
    value = value or ""
    if len(value) > COMMENT_MAX_LENGTH:
        raise InvalidParameter(
            f"{field} is longer than {COMMENT_MAX_LENGTH} characters.",
            fields={field: [f"At most {COMMENT_MAX_LENGTH} characters."]},
        )
    return value


def _missing_tags(version: ModelVersion, required: dict[str, str]) -> list[str]:
    have = dict(version.tags.values_list("key", "value"))
    return [f"{key}={value}" for key, value in required.items() if have.get(key) != value]


# --- requests -------------------------------------------------------------------------------


@transaction.atomic
def request_create(
    *, version: ModelVersion, target: str, actor: Actor, comment: str = ""
) -> TransitionRequest:
    """Ask for a version to reach a stage (or a protected alias to point at it)."""
    target = parse_target(target)
    comment = _text(comment)
    if actor.user is None:
        raise PermissionDenied("Only a signed-in user can request a transition.")
    require_writer(actor)
    model = model_lock(version.model)
    require_level(actor, model, Level.CAN_READ)
    version = ModelVersion.objects.select_related("model", "created_by").get(pk=version.pk)
    if version.deleted_at is not None:
        raise InvalidParameter(f"Version {version.version} of '{model.name}' is deleted.")
    if target == version.stage:
        raise InvalidParameter(f"Version {version.version} is already in {target}.")
    rules = rules_for(model, target)
    now = timezone.now()
    expires = (
        now + timedelta(hours=rules.expires_after_hours) if rules.expires_after_hours else None
    )
    try:
        with transaction.atomic():
            request = TransitionRequest.objects.create(
                model=model,
                version=version,
                target=target,
                from_stage=version.stage,
                requester=actor.user,
                requester_name=actor.name,
                comment=comment,
                policy_id_at_creation=rules.policy_id,
                required_approvals=rules.required_approvals,
                approver_level=rules.approver_level.name,
                allow_self_approval=rules.allow_self_approval,
                required_tags=rules.required_tags,
                archive_existing_versions=rules.archive_existing_versions,
                move_alias=rules.move_alias,
                created_at=now,
                updated_at=now,
                expires_at=expires,
            )
    except IntegrityError:
        raise AlreadyExists(
            f"You already have an open request for version {version.version} of "
            f"'{model.name}' to {target}."
        ) from None
    _record(WorkflowEvent.REQUEST_CREATED, request, actor, comment)
    return request


def _lock_request(request: TransitionRequest) -> TransitionRequest:
    model_lock(request.model)
    return (
        TransitionRequest.objects.select_for_update(of=("self",))
        .select_related("model", "version", "version__model")
        .get(pk=request.pk)
    )


def _require_open(request: TransitionRequest) -> None:
    if request.status != RequestStatus.PENDING:
        raise Conflict(f"Request #{request.pk} is {request.status}, not PENDING.")
    if request.expires_at is not None and request.expires_at <= timezone.now():
        raise Conflict(f"Request #{request.pk} has expired.")


def reviewer_refusal(
    request: TransitionRequest, actor: Actor, decision: Decision
) -> DomainError | None:
    """Why `actor` may not make `decision` on `request` now, or None when it may."""
    if actor.user is None:
        return PermissionDenied("Only a signed-in user can review a request.")
    if actor.token is not None and actor.token.read_only:
        return PermissionDenied("This API token is read-only.")
    needed = Level[request.approver_level]
    have = model_level(actor, request.model)
    if have < needed:
        return PermissionDenied(
            f"Reviewing this request needs {needed.name}; you have {have.name}."
        )
    if decision == Decision.APPROVE and not request.allow_self_approval:
        if actor.user.pk == request.requester_id:
            return PermissionDenied(
                "You requested this transition; the policy needs someone else to approve it."
            )
        if actor.user.pk == request.version.created_by_id:
            return PermissionDenied(
                "You registered this version; the policy needs someone else to approve it."
            )
    if request.reviews.filter(reviewer=actor.user).exists():
        return Conflict("You have already decided on this request.")
    return None


def _review_record(
    request: TransitionRequest, actor: Actor, decision: Decision, comment: str, now: Any
) -> Review:
    """The reviewer's decision, with the copies the no-self-approval constraint checks."""
    return Review.objects.create(
        request=request,
        reviewer=actor.user,  # type: ignore[misc]  # reviewer_refusal refused a None user
        reviewer_name=actor.name,
        decision=decision,
        comment=comment,
        created_at=now,
        requester_id_copy=request.requester_id,
        version_creator_id_copy=request.version.created_by_id,
        self_approval_allowed=request.allow_self_approval,
    )


@refusals_recorded
@transaction.atomic
def request_approve(
    *,
    request: TransitionRequest,
    actor: Actor,
    comment: str = "",
    archive_existing_versions: bool | None = None,
) -> TransitionRequest:
    """Record an approval; at the quorum the request is APPROVED and queued for applying.

    `archive_existing_versions` is the approver's choice, as Databricks' approve carries it: it
    counts for a stage request made under no policy (Databricks' rules); a policy's choice stands.
    """
    comment = _text(comment)
    request = _lock_request(request)
    _require_open(request)
    refusal = reviewer_refusal(request, actor, Decision.APPROVE)
    if isinstance(refusal, PermissionDenied):
        raise _refused_review(refusal, request, actor, Decision.APPROVE, comment)
    if refusal:
        raise refusal
    missing = _missing_tags(request.version, request.required_tags)
    if missing:
        missing_tags = Conflict(
            f"Version {request.version.version} must carry {', '.join(missing)} before it can "
            "be approved."
        )
        raise _refused_review(missing_tags, request, actor, Decision.APPROVE, comment)
    before = request_snapshot(request)
    now = timezone.now()
    _review_record(request, actor, Decision.APPROVE, comment, now)
    request.updated_at = now
    approvals = request.reviews.filter(decision=Decision.APPROVE).count()
    quorum = approvals >= request.required_approvals
    if quorum:
        request.status = RequestStatus.APPROVED
        request.decided_at = now
        if (
            archive_existing_versions is not None
            and request.policy_id_at_creation is None
            and request.target in (Stage.STAGING, Stage.PRODUCTION)
        ):
            request.archive_existing_versions = archive_existing_versions
    request.save(update_fields=["status", "updated_at", "decided_at", "archive_existing_versions"])
    _record(WorkflowEvent.REQUEST_APPROVAL_RECORDED, request, actor, comment, before)
    if quorum:
        _record(WorkflowEvent.REQUEST_APPROVED, request, actor, before=before)
        from workflows.tasks import request_apply

        request_id = request.pk
        transaction.on_commit(lambda: _queue_apply(request_apply, request_id))
    return request


def _queue_apply(task: Any, request_id: int) -> None:
    try:
        task.delay(request_id)
    except Exception:
        # The broker is down: the beat sweeper applies approved requests it finds waiting.
        logger.warning("could not queue request %s for applying", request_id, exc_info=True)


@refusals_recorded
@transaction.atomic
def request_reject(
    *, request: TransitionRequest, actor: Actor, comment: str = ""
) -> TransitionRequest:
    """One rejection ends the request."""
    comment = _text(comment)
    request = _lock_request(request)
    _require_open(request)
    refusal = reviewer_refusal(request, actor, Decision.REJECT)
    if isinstance(refusal, PermissionDenied):
        raise _refused_review(refusal, request, actor, Decision.REJECT, comment)
    if refusal:
        raise refusal
    before = request_snapshot(request)
    now = timezone.now()
    _review_record(request, actor, Decision.REJECT, comment, now)
    request.status = RequestStatus.REJECTED
    request.decided_at = request.updated_at = now
    request.save(update_fields=["status", "decided_at", "updated_at"])
    _record(WorkflowEvent.REQUEST_REJECTED, request, actor, comment, before)
    return request


@transaction.atomic
def request_cancel(
    *, request: TransitionRequest, actor: Actor, comment: str = ""
) -> TransitionRequest:
    """The requester, or a CAN_MANAGE holder, withdraws a pending request."""
    comment = _text(comment)
    request = _lock_request(request)
    if request.status != RequestStatus.PENDING:
        raise Conflict(f"Request #{request.pk} is {request.status}, not PENDING.")
    require_writer(actor)
    is_requester = actor.user is not None and actor.user.pk == request.requester_id
    if not is_requester and model_level(actor, request.model) < Level.CAN_MANAGE:
        raise PermissionDenied("Only the requester or a CAN_MANAGE holder can cancel a request.")
    before = request_snapshot(request)
    request.status = RequestStatus.CANCELLED
    request.updated_at = request.decided_at = timezone.now()
    request.save(update_fields=["status", "updated_at", "decided_at"])
    _record(WorkflowEvent.REQUEST_CANCELLED, request, actor, comment, before)
    return request


def request_apply(*, request_id: int, actor: Actor | None = None) -> TransitionRequest | None:
    """Apply an APPROVED request: transition, archiving and alias move in one transaction.

    Idempotent: run twice, concurrently or after a redelivery, it applies once (the request
    row is locked and its status checked). When the request no longer makes sense the request
    is FAILED with the reason and nothing else changes. `actor` is the system as the task runs
    it (its events carry the task's id); the changes it makes name the approvers in their
    comment, and the request's own event lists them in `after`.
    """
    with transaction.atomic():
        request = (
            TransitionRequest.objects.select_related("model", "version")
            .filter(pk=request_id)
            .first()
        )
        if request is None:
            return None
        request = _lock_request(request)
        if request.status != RequestStatus.APPROVED:
            return request
        approvers = sorted(
            request.reviews.filter(decision=Decision.APPROVE).values_list(
                "reviewer_name", flat=True
            )
        )
        actor = actor or Actor.system(source=Source.TASK)
        note = f"Applying request #{request.pk}, approved by {', '.join(approvers)}."
        before = request_snapshot(request)
        try:
            with transaction.atomic():
                _apply(request, actor, note)
        except DomainError as exc:
            request.status = RequestStatus.FAILED
            request.status_reason = exc.message
        else:
            request.status = RequestStatus.APPLIED
            request.applied_at = timezone.now()
        request.updated_at = timezone.now()
        request.save(update_fields=["status", "status_reason", "applied_at", "updated_at"])
        event = (
            WorkflowEvent.REQUEST_APPLIED
            if request.status == RequestStatus.APPLIED
            else WorkflowEvent.REQUEST_FAILED
        )
        _record(
            event,
            request,
            actor,
            note if event == WorkflowEvent.REQUEST_APPLIED else request.status_reason,
            before,
        )
        return request


def _apply(request: TransitionRequest, actor: Actor, note: str) -> None:
    version = ModelVersion.objects.select_related("model").get(pk=request.version_id)
    if version.deleted_at is not None:
        raise InvalidParameter(f"Version {version.version} was deleted after the request.")
    if version.stage != request.from_stage:
        raise Conflict(
            f"Version {version.version} moved from {request.from_stage} to {version.stage} "
            "after the request; it no longer makes sense."
        )
    missing = _missing_tags(version, request.required_tags)
    if missing:
        raise Conflict(f"Version {version.version} no longer carries {', '.join(missing)}.")
    if request.target.startswith(ALIAS_PREFIX):
        registry_services.alias_set(
            model=version.model,
            alias=request.target.removeprefix(ALIAS_PREFIX),
            version=version.version,
            actor=actor,
            approval=request.pk,
            comment=note,
        )
        return
    registry_services.version_transition(
        version=version,
        stage=Stage(request.target),
        actor=actor,
        archive_existing=request.archive_existing_versions,
        comment=note,
        approval=request.pk,
    )
    if request.move_alias:
        registry_services.alias_set(
            model=version.model,
            alias=request.move_alias,
            version=version.version,
            actor=actor,
            approval=request.pk,
            comment=note,
        )


def requests_expire(*, now: Any = None, actor: Actor | None = None) -> int:
    """Expire the pending requests past their time; returns how many."""
    now = now or timezone.now()
    actor = actor or Actor.system()
    expired = 0
    for request_id in TransitionRequest.objects.filter(
        status=RequestStatus.PENDING, expires_at__lte=now
    ).values_list("pk", flat=True):
        with transaction.atomic():
            request = _lock_request(
                TransitionRequest.objects.select_related("model").get(pk=request_id)
            )
            if request.status != RequestStatus.PENDING:
                continue
            before = request_snapshot(request)
            request.status = RequestStatus.EXPIRED
            request.updated_at = request.decided_at = now
            request.save(update_fields=["status", "updated_at", "decided_at"])
            note = f"Expired undecided at {request.expires_at:%Y-%m-%d %H:%M:%S %Z}."
            _record(WorkflowEvent.REQUEST_EXPIRED, request, actor, note, before)
            expired += 1
    return expired


def requests_apply_waiting(
    *, older_than: timedelta = timedelta(seconds=30), actor: Actor | None = None
) -> int:
    """Apply APPROVED requests whose task never ran (broker down); returns how many."""
    cutoff = timezone.now() - older_than
    ids = TransitionRequest.objects.filter(
        status=RequestStatus.APPROVED, decided_at__lte=cutoff
    ).values_list("pk", flat=True)
    applied = 0
    for request_id in list(ids):
        request = request_apply(request_id=request_id, actor=actor)
        applied += request is not None and request.status == RequestStatus.APPLIED
    return applied


# --- comments -------------------------------------------------------------------------------


def comment_snapshot(comment: Comment) -> dict[str, Any]:
    return {"id": comment.pk, "author": comment.author_name, "text": comment.text}


@transaction.atomic
def comment_create(*, version: ModelVersion, actor: Actor, text: str) -> Comment:
    text = _text(text, "comment").strip()
    if not text:
        raise InvalidParameter("A comment needs text.", fields={"comment": ["Empty."]})
    if actor.user is None:
        raise PermissionDenied("Only a signed-in user can comment.")
    require_writer(actor)
    model = model_lock(version.model)
    require_level(actor, model, Level.CAN_READ)
    now = timezone.now()
    comment = Comment.objects.create(
        version=version,
        author=actor.user,
        author_name=actor.name,
        text=text,
        created_at=now,
        updated_at=now,
    )
    event_record(
        type=WorkflowEvent.COMMENT_CREATED,
        actor=actor,
        model=model,
        version=version.version,
        after=comment_snapshot(comment),
        comment=text,
    )
    return comment


def _lock_comment(comment: Comment, actor: Actor, *, manage_may: bool) -> Comment:
    comment = Comment.objects.select_related("version", "version__model").get(pk=comment.pk)
    model_lock(comment.version.model)
    comment = (
        Comment.objects.select_for_update(of=("self",))
        .select_related("version", "version__model")
        .get(pk=comment.pk)
    )
    require_writer(actor)
    is_author = actor.user is not None and actor.user.pk == comment.author_id
    if not is_author and not (
        manage_may and model_level(actor, comment.version.model) >= Level.CAN_MANAGE
    ):
        raise PermissionDenied("Only the author can change this comment.")
    return comment


@transaction.atomic
def comment_update(*, comment: Comment, actor: Actor, text: str) -> Comment:
    text = _text(text, "comment").strip()
    if not text:
        raise InvalidParameter("A comment needs text.", fields={"comment": ["Empty."]})
    comment = _lock_comment(comment, actor, manage_may=False)
    before = comment_snapshot(comment)
    comment.text = text
    comment.updated_at = timezone.now()
    comment.save(update_fields=["text", "updated_at"])
    event_record(
        type=WorkflowEvent.COMMENT_UPDATED,
        actor=actor,
        model=comment.version.model,
        version=comment.version.version,
        before=before,
        after=comment_snapshot(comment),
    )
    return comment


@transaction.atomic
def comment_delete(*, comment: Comment, actor: Actor) -> None:
    """The author, or a CAN_MANAGE holder (moderation), removes a comment; history keeps it."""
    comment = _lock_comment(comment, actor, manage_may=True)
    event_record(
        type=WorkflowEvent.COMMENT_DELETED,
        actor=actor,
        model=comment.version.model,
        version=comment.version.version,
        before=comment_snapshot(comment),
    )
    comment.delete()
