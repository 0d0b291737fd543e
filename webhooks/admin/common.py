"""What a staff member reaches among subscriptions, and the base of the webhook admin screens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from accounts.actors import Actor
from registry.admin import admin_actor
from registry.models import RegisteredModel, RegisteredModelGroupGrant, RegisteredModelUserGrant
from registry.permissions import Level, registry_level
from webhooks.models import Subscription


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
        if actor.is_system or (user is not None and user.is_active and user.is_superuser):
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


class WebhookAdminMixin:
    """Staff-only screens; the objects are those of the subscriptions the staff member manages."""

    def actor(self, request: HttpRequest) -> Actor:
        actor = getattr(request, "_modelgate_admin_actor", None)
        if actor is None:
            actor = admin_actor(request)
            request._modelgate_admin_actor = actor  # type: ignore[attr-defined]
        return actor

    def reach(self, request: HttpRequest) -> Reach:
        return Reach.of(self.actor(request))

    def _staff(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def subscription_of(self, obj: Any) -> Subscription:
        return obj if isinstance(obj, Subscription) else obj.subscription

    def manages(self, request: HttpRequest, obj: Any) -> bool:
        return self._staff(request) and (
            obj is None or self.reach(request).covers(self.subscription_of(obj))
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.manages(request, obj)

    def error(self, request: HttpRequest, text: str) -> None:
        self.message_user(request, text, messages.ERROR)  # type: ignore[attr-defined]
