"""The outbox side of the event log: hand each committed event to the configured consumers.

Consumers are callables `consumer(event)` named by dotted path in MODELGATE_EVENT_CONSUMERS. They
must be idempotent: an event is handed over again when a previous attempt failed or its worker
died before the outbox row was removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from registry.models import Event, EventOutbox

logger = logging.getLogger(__name__)

Consumer = Callable[[Event], None]


@cache
def _consumers(paths: tuple[str, ...]) -> list[Consumer]:
    return [import_string(path) for path in paths]


def event_consumers() -> list[Consumer]:
    return _consumers(tuple(settings.MODELGATE_EVENT_CONSUMERS))


def event_publish_on_commit(seq: int) -> None:
    """Queue the event for publishing once the surrounding transaction commits."""
    from registry.tasks import event_publish as task

    def send() -> None:
        try:
            task.delay(seq)
        except Exception:
            # The broker is down: the sweeper publishes the event later from the outbox.
            logger.warning("could not queue event %s for publishing", seq, exc_info=True)

    transaction.on_commit(send)


def event_publish(*, seq: int) -> bool:
    """Hand one event to every consumer, then drop it from the outbox.

    Returns False when the event was already published (or is being published by another
    worker, which holds the outbox row lock).
    """
    with transaction.atomic():
        entry = (
            EventOutbox.objects.select_for_update(skip_locked=True)
            .select_related("event")
            .filter(pk=seq)
            .first()
        )
        if entry is None:
            return False
        try:
            # In a savepoint: a consumer failing in the database rolls back its own writes and
            # leaves the transaction usable, so the failure is still counted below.
            with transaction.atomic():
                for consumer in event_consumers():
                    consumer(entry.event)
        except Exception as exc:
            logger.exception("publishing event %s failed", seq)
            EventOutbox.objects.filter(pk=seq).update(
                attempts=entry.attempts + 1, last_error=repr(exc)[:2000]
            )
            return False
        entry.delete()
    return True


def events_republish_stale(*, older_than: timedelta | None = None, limit: int = 1000) -> int:
    """Publish events whose publishing has not finished in time; returns how many succeeded."""
    if older_than is None:
        older_than = timedelta(seconds=settings.MODELGATE_EVENT_REPUBLISH_AFTER_SECONDS)
    cutoff = timezone.now() - older_than
    seqs = list(
        EventOutbox.objects.filter(created_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(event_publish(seq=seq) for seq in seqs)
