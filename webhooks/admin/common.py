"""What a staff member reaches among subscriptions, and the base of the webhook admin screens."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest

from accounts.actors import Actor
from registry.admin import admin_actor
from webhooks.models import Subscription
from webhooks.selectors import Reach


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
