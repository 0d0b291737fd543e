"""Reads of webhooks, limited to the subscriptions the actor may manage."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from accounts.actors import Actor
from config.errors import NotFound, PermissionDenied
from registry.models import RegisteredModel
from registry.permissions import Level, model_level, visible_models
from webhooks.models import Attempt, Delivery, Subscription


def _is_superuser(actor: Actor) -> bool:
    user = actor.user
    return actor.is_system or (user is not None and user.is_active and user.is_superuser)


def subscription_list(
    *, actor: Actor, model: RegisteredModel | None = None, flavor: str | None = None
) -> list[Subscription]:
    """Subscriptions the actor manages: every one for superusers, otherwise those of models
    where it holds CAN_MANAGE."""
    queryset = Subscription.objects.select_related("owner").order_by("created_at", "id")
    if model is not None:
        queryset = queryset.filter(model_id=model.pk)
    if flavor is not None:
        queryset = queryset.filter(flavor=flavor)
    if _is_superuser(actor):
        return list(queryset)
    if actor.token is not None and actor.token.read_only:
        return []
    models = {
        m.pk: m
        for m in visible_models(actor, RegisteredModel.objects.all()).filter(
            pk__in=queryset.values("model_id")
        )
    }
    managed = {pk for pk, m in models.items() if model_level(actor, m) >= Level.CAN_MANAGE}
    return [s for s in queryset.filter(model_id__in=managed)]


def _parse_id(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def subscription_get(*, actor: Actor, pk: object) -> Subscription:
    """404 when the actor cannot see it (or it does not exist), 403 when it can see the model
    but not manage its webhooks."""
    parsed = _parse_id(pk)
    found = (
        Subscription.objects.select_related("owner").filter(pk=parsed).first() if parsed else None
    )
    if found is None:
        raise NotFound(f"Webhook {pk} not found")
    if _is_superuser(actor):
        return found
    model = (
        RegisteredModel.objects.filter(pk=found.model_id).first()
        if found.model_id is not None
        else None
    )
    level = model_level(actor, model) if model is not None else Level.NONE
    if level < Level.CAN_READ:
        raise NotFound(f"Webhook {pk} not found")
    if level < Level.CAN_MANAGE or (actor.token is not None and actor.token.read_only):
        raise PermissionDenied(
            f"CAN_MANAGE on registered model '{model.name}' is needed to manage its webhooks."  # type: ignore[union-attr]
        )
    return found


def delivery_list(*, subscription: Subscription, state: str | None = None) -> QuerySet:
    queryset = Delivery.objects.filter(subscription=subscription).prefetch_related(
        Prefetch("attempt_set", queryset=Attempt.objects.order_by("number"))
    )
    if state:
        queryset = queryset.filter(state=state)
    return queryset.order_by("-id")


def delivery_get(*, actor: Actor, pk: object) -> Delivery:
    try:
        number = int(str(pk))
    except ValueError:
        number = None
    found = (
        Delivery.objects.select_related("subscription").filter(pk=number).first()
        if number is not None
        else None
    )
    if found is None:
        raise NotFound(f"Delivery {pk} not found")
    subscription_get(actor=actor, pk=found.subscription_id)
    return found
