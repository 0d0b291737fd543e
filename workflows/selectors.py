"""Reads of the approval workflow, limited to what the actor may see."""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.actors import Actor
from config.errors import NotFound
from registry.models import ModelVersion, RegisteredModel
from registry.permissions import Level, model_level, sees_every_model, visible_models
from workflows.choices import Decision, RequestStatus
from workflows.models import Comment, Policy, Review, TransitionRequest


def _visible(actor: Actor, qs: QuerySet, field: str = "model") -> QuerySet:
    if sees_every_model(actor):
        return qs
    return qs.filter(**{f"{field}__in": visible_models(actor, RegisteredModel.objects.all())})


def request_list(
    *, actor: Actor, model: RegisteredModel | None = None, status: str | None = None
) -> QuerySet:
    qs = TransitionRequest.objects.select_related("model", "version", "requester").prefetch_related(
        Prefetch("reviews", queryset=Review.objects.order_by("created_at"))
    )
    qs = _visible(actor, qs)
    if model is not None:
        qs = qs.filter(model=model)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-pk")


def request_get(*, actor: Actor, pk: int) -> TransitionRequest:
    found = request_list(actor=actor).filter(pk=pk).first()
    if found is None:
        raise NotFound(f"Transition request {pk} not found")
    return found


def requests_waiting_for(*, actor: Actor, model: RegisteredModel | None = None) -> list:
    """Pending requests the actor may decide now: right level, not its own (when the policy
    says so), not decided yet, not expired."""
    if actor.user is None:
        return []
    pending = (
        request_list(actor=actor, model=model, status=RequestStatus.PENDING)
        .exclude(reviews__reviewer=actor.user)
        # Past its time but not swept yet: it can no longer be decided.
        .exclude(expires_at__lte=timezone.now())
    )
    levels: dict[int, Level] = {}
    waiting = []
    for request in pending:
        if request.model_id not in levels:
            levels[request.model_id] = model_level(actor, request.model)
        if levels[request.model_id] < Level[request.approver_level]:
            continue
        if not request.allow_self_approval and actor.user.pk in (
            request.requester_id,
            request.version.created_by_id,
        ):
            continue
        waiting.append(request)
    return waiting


def approvals_of(request: TransitionRequest) -> list[Review]:
    return [review for review in request.reviews.all() if review.decision == Decision.APPROVE]


def policy_list(*, actor: Actor) -> QuerySet:
    qs = Policy.objects.select_related("model")
    if sees_every_model(actor):
        return qs
    return qs.filter(
        Q(model__isnull=True) | Q(model__in=visible_models(actor, RegisteredModel.objects.all()))
    )


def policy_get(*, actor: Actor, pk: int) -> Policy:
    found = policy_list(actor=actor).filter(pk=pk).first()
    if found is None:
        raise NotFound(f"Policy {pk} not found")
    return found


def comment_list(*, version: ModelVersion) -> QuerySet:
    """Comments of a version the caller was already allowed to read."""
    return Comment.objects.filter(version=version).order_by("created_at", "pk")


def comment_get(*, actor: Actor, pk: int) -> Comment:
    found = (
        _visible(
            actor, Comment.objects.select_related("version", "version__model"), "version__model"
        )
        .filter(pk=pk, version__deleted_at__isnull=True)
        .first()
    )
    if found is None:
        raise NotFound(f"Comment {pk} not found")
    return found
