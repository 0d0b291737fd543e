"""Reads of webhooks, limited to the subscriptions the actor may manage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Prefetch, Q, QuerySet

from accounts.actors import Actor
from config.errors import NotFound, PermissionDenied
from registry.models import RegisteredModel, RegisteredModelGroupGrant, RegisteredModelUserGrant
from registry.permissions import Level, model_level, registry_level
from webhooks.models import Attempt, Delivery, Subscription


def _is_superuser(actor: Actor) -> bool:
    user = actor.user
    return actor.is_system or (user is not None and user.is_active and user.is_superuser)


@dataclass(frozen=True, slots=True)
class Reach:
    """The subscriptions one actor may manage, as the services decide it: a model's with
    CAN_MANAGE on the model, registry-wide ones (and those whose model is gone) as a superuser."""

    everything: bool
    every_model: bool
    model_ids: frozenset[int]

    @classmethod
    def of(cls, actor: Actor) -> Reach:
        found = actor.cache.get("webhook_reach")
        if found is not None:
            return found
        user = actor.user
        if _is_superuser(actor):
            reach = cls(everything=True, every_model=True, model_ids=frozenset())
        elif user is None or not user.is_active:
            reach = cls(everything=False, every_model=False, model_ids=frozenset())
        elif registry_level(actor) >= Level.CAN_MANAGE:
            reach = cls(everything=False, every_model=True, model_ids=frozenset())
        else:
            codename = Level.CAN_MANAGE.codename
            own = RegisteredModelUserGrant.objects.filter(user=user, permission__codename=codename)
            groups = RegisteredModelGroupGrant.objects.filter(
                group__user=user, permission__codename=codename
            )
            ids = set(own.values_list("content_object_id", flat=True))
            ids |= set(groups.values_list("content_object_id", flat=True))
            reach = cls(everything=False, every_model=False, model_ids=frozenset(ids))
        actor.cache["webhook_reach"] = reach
        return reach

    def subscriptions(self, queryset: QuerySet, prefix: str = "") -> QuerySet:
        """Narrow a queryset (of subscriptions, or of rows reaching one through `prefix`)."""
        if self.everything:
            return queryset
        field = f"{prefix}model_id__in"
        if self.every_model:
            return queryset.filter(Q(**{field: RegisteredModel.objects.values("pk")}))
        return queryset.filter(Q(**{field: sorted(self.model_ids)}))

    def covers(self, subscription: Subscription) -> bool:
        if self.everything:
            return True
        if subscription.model_id is None:
            return False
        if self.every_model:
            return RegisteredModel.objects.filter(pk=subscription.model_id).exists()
        return subscription.model_id in self.model_ids

    @property
    def any_model(self) -> bool:
        """Whether the actor may make a subscription at all."""
        return self.everything or self.every_model or bool(self.model_ids)


def subscription_list(
    *, actor: Actor, model: RegisteredModel | None = None, flavor: str | None = None
) -> list[Subscription]:
    """Subscriptions the actor manages (see Reach), narrowed by its token: none for a read-only
    token, only its models' for a model-limited one."""
    reach = Reach.of(actor)
    queryset = reach.subscriptions(
        Subscription.objects.select_related("owner").order_by("created_at", "id")
    )
    if model is not None:
        queryset = queryset.filter(model_id=model.pk)
    if flavor is not None:
        queryset = queryset.filter(flavor=flavor)
    token = actor.token
    if token is not None and not reach.everything:
        if token.read_only:
            return []
        if token.models.exists():
            queryset = queryset.filter(model_id__in=token.models.values("pk"))
    return list(queryset)


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
