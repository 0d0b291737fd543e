"""The event consumer: one delivery per (event, subscription) that should hear it."""

from __future__ import annotations

import logging

from celery import current_task
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.actors import Actor
from registry.choices import EventType
from registry.models import Event, RegisteredModel
from registry.permissions import Level, model_level, sees_every_model
from webhooks.choices import DeliveryState, SubscriptionStatus
from webhooks.models import Delivery, Subscription
from webhooks.payloads import event_body, subscribed_name
from webhooks.sending import delivery_dispatch_on_commit, delivery_send

logger = logging.getLogger(__name__)
PUBLISH_TASK = "registry.tasks.event_publish"


def owner_may_hear(subscription: Subscription, event: Event, model: RegisteredModel | None) -> bool:
    """Subscriptions hear only about models their owner can still read."""
    owner = subscription.owner
    if owner is None or not owner.is_active:
        return False
    actor = Actor(user=owner)
    if model is not None:
        return model_level(actor, model) >= Level.CAN_READ
    if event.model_id is not None and subscription.model_id == event.model_id:
        # The model is gone (its deletion event): the subscription made for it hears of it.
        return True
    # A deleted model's or a registry-wide event: for owners who see every model.
    return sees_every_model(actor)


def event_fan_out(event: Event) -> None:
    """Create the event's deliveries and hand them to workers after commit (idempotent)."""
    if event.type == EventType.MODEL_RENAMED and event.model_id is not None:
        # Subscriptions follow their model by id; the name they show follows the rename.
        Subscription.objects.filter(model_id=event.model_id).update(model_name=event.model_name)
    scope = Q(model_id__isnull=True)
    if event.model_id is not None:
        scope |= Q(model_id=event.model_id)
    subscriptions = list(
        Subscription.objects.filter(scope, status=SubscriptionStatus.ACTIVE).select_related("owner")
    )
    if not subscriptions:
        return
    model = (
        RegisteredModel.objects.filter(pk=event.model_id).first()
        if event.model_id is not None
        else None
    )
    now = timezone.now()
    deliveries = []
    for subscription in subscriptions:
        name = subscribed_name(subscription, event)
        if name is None or not owner_may_hear(subscription, event, model):
            continue
        deliveries.append(
            Delivery(
                subscription=subscription,
                event=event,
                event_type=name,
                body=event_body(subscription, name, event),
                next_attempt_at=now,
                dispatched_at=now,
            )
        )
    Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    # Pending deliveries of this event, new or left from an earlier try at publishing it.
    pending = list(
        Delivery.objects.filter(event=event, state=DeliveryState.PENDING).values_list(
            "pk", flat=True
        )
    )
    if len(pending) == 1 and getattr(current_task, "name", None) == PUBLISH_TASK:
        # The usual case, one subscriber: the publishing task sends it itself after the commit
        # instead of queueing a task for it, a broker round trip and a task's overhead fewer
        # (about a fifth of a delivery's worker CPU, bench/webhooks.py). Several deliveries,
        # and the sweepers' re-publishing, still go through the queue, so one slow receiver
        # never holds up the others or a sweep.
        transaction.on_commit(lambda: _send_now(pending[0]))
    else:
        delivery_dispatch_on_commit(pending)


def _send_now(pk: int) -> None:
    try:
        delivery_send(pk=pk)
    except Exception:
        # It keeps its hand-out time (and any lease): the sweeper hands it out again.
        logger.exception("sending webhook delivery %s failed", pk)
