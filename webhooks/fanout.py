"""The event consumer: one delivery per (event, subscription) that should hear it.

The deliveries made in one transaction (the publishing task hands events over in batches) are
handed to workers together once it commits, DISPATCH_CHUNK per send task. The one-event
publishing task of earlier versions sends a lone delivery itself; the batched one never does:
it publishes every event in turn, and one receiver that hangs would hold all of them up.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from celery import current_task
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.actors import Actor
from registry.choices import EventType
from registry.models import Event, RegisteredModel
from registry.permissions import Level, model_level, sees_every_model
from webhooks.choices import DeliveryState, SubscriptionStatus
from webhooks.models import Delivery, Subscription
from webhooks.payloads import event_body, subscribed_name
from webhooks.sending import deliveries_send_claimed, delivery_dispatch_on_commit, lease_end

logger = logging.getLogger(__name__)
# The tasks that send a transaction's lone delivery themselves: the one-event publishing task
# (many run side by side), not the batched one nor the sweeper's re-publishing, which must not
# wait on receivers.
INLINE_TASKS = frozenset({"registry.tasks.event_publish"})


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


class _Handout:
    """The deliveries made in one transaction, handed to workers once it commits.

    Registered with on_commit by the transaction's first fan-out; later ones add to it while it
    is still registered (a rolled-back savepoint that registered it unregisters it, and the next
    fan-out starts another). A delivery rolled back with a later event's savepoint may be left in
    it: its send task finds nothing to claim. It also keeps the active subscriptions for the
    transaction, so a batch of events reads them once.
    """

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.subscriptions: dict[int | None, list[Subscription]] | None = None

    def __call__(self) -> None:
        if getattr(_local, "handout", None) is self:
            _local.handout = None
        if len(self.deliveries) == 1 and getattr(current_task, "name", None) in INLINE_TASKS:
            # One delivery, in a one-event publishing task: sent from here, a broker round trip
            # and a task's overhead fewer.
            _send_now(self.deliveries[0])
        else:
            delivery_dispatch_on_commit([delivery.pk for delivery in self.deliveries])


_local = threading.local()


def _handout() -> _Handout | None:
    """The current transaction's handout (registering one if needed); None outside one."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return None
    handout = getattr(_local, "handout", None)
    if handout is None or not any(entry[1] is handout for entry in connection.run_on_commit):
        handout = _local.handout = _Handout()
        transaction.on_commit(handout)
    return handout


def _active_subscriptions(scope: Q | None = None) -> dict[int | None, list[Subscription]]:
    """The active subscriptions (in `scope`, else all) with their owners, by the model they are
    for (None: registry-wide)."""
    by_model: dict[int | None, list[Subscription]] = defaultdict(list)
    active = Subscription.objects.filter(status=SubscriptionStatus.ACTIVE)
    if scope is not None:
        active = active.filter(scope)
    for subscription in active.select_related("owner").order_by("pk"):
        by_model[subscription.model_id].append(subscription)
    return by_model


def _subscriptions(event: Event, handout: _Handout | None) -> list[Subscription]:
    """The active subscriptions in the event's scope (registry-wide, or for its model). In a
    transaction, every active one is read once, with the first event: a batch of events on
    many models then costs one query, not one per model."""
    if handout is None:
        scope = Q(model_id__isnull=True)
        if event.model_id is not None:
            scope |= Q(model_id=event.model_id)
        by_model = _active_subscriptions(scope)
    else:
        if handout.subscriptions is None:
            handout.subscriptions = _active_subscriptions()
        by_model = handout.subscriptions
    found = list(by_model.get(None, ()))
    if event.model_id is not None:
        found.extend(by_model.get(event.model_id, ()))
    return found


def _hears(
    subscription: Subscription, event: Event, models: dict[str, RegisteredModel | None]
) -> bool:
    owner = subscription.owner
    if owner is not None and owner.is_active and owner.is_superuser:
        # A superuser reads every model, deleted or not: no need to look the model up.
        return True
    if "model" not in models:
        models["model"] = (
            RegisteredModel.objects.filter(pk=event.model_id).first()
            if event.model_id is not None
            else None
        )
    return owner_may_hear(subscription, event, models["model"])


def event_fan_out(event: Event) -> None:
    """Create the event's deliveries and hand them to workers after commit (idempotent)."""
    handout = _handout()
    if event.type == EventType.MODEL_RENAMED and event.model_id is not None:
        # Subscriptions follow their model by id; the name they show follows the rename.
        Subscription.objects.filter(model_id=event.model_id).update(model_name=event.model_name)
        if handout is not None:
            handout.subscriptions = None
    models: dict[str, RegisteredModel | None] = {}
    hearing = [
        (subscription, name)
        for subscription in _subscriptions(event, handout)
        if (name := subscribed_name(subscription, event)) is not None
        and _hears(subscription, event, models)
    ]
    if not hearing:
        return
    now = timezone.now()
    deliveries = [
        Delivery(
            subscription=subscription,
            event=event,
            event_type=name,
            body=event_body(subscription, name, event),
            next_attempt_at=now,
            dispatched_at=now,
        )
        for subscription, name in hearing
    ]
    if not _create(deliveries):
        # Some exist already (an earlier try at publishing the event): add the missing ones and
        # hand out every pending one no worker holds.
        for delivery in deliveries:
            delivery.pk = None
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        pending = Delivery.objects.filter(
            event=event, state=DeliveryState.PENDING, next_attempt_at__lte=now
        ).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        deliveries = list(pending.select_related("subscription"))
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(dispatched_at=now)
    if handout is None:
        delivery_dispatch_on_commit([delivery.pk for delivery in deliveries])
    else:
        handout.deliveries.extend(deliveries)


def _create(deliveries: list[Delivery]) -> bool:
    """Insert the deliveries, setting their ids; False (and nothing inserted) if one of them
    exists already, or the database does not tell the ids of inserted rows."""
    if not transaction.get_connection().features.can_return_rows_from_bulk_insert:
        return False
    try:
        # A savepoint: the conflict leaves the publishing transaction usable.
        with transaction.atomic():
            Delivery.objects.bulk_create(deliveries)
    except IntegrityError:
        return False
    return True


def _send_now(delivery: Delivery) -> None:
    """Claim and send a delivery this process just made (and committed)."""
    now = timezone.now()
    until = lease_end(now)
    try:
        # Not in the broker's hands (no hand-out time) but in this worker's (the lease): if it
        # dies, the sweeper hands the delivery out once the lease runs out.
        claimed = (
            Delivery.objects.filter(
                pk=delivery.pk, state=DeliveryState.PENDING, next_attempt_at__lte=now
            )
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(lease_until=until, dispatched_at=None)
        )
        if claimed:
            delivery.lease_until, delivery.dispatched_at = until, None
            deliveries_send_claimed([delivery])
    except Exception:
        logger.exception("sending webhook delivery %s failed", delivery.pk)
