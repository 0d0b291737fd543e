"""The outbox side of the event log: hand committed events to the configured consumers.

Consumers are callables `consumer(event)` named by dotted path in MODELGATE_EVENT_CONSUMERS. They
must be idempotent: an event is handed over again when a previous attempt failed (its own or that
of an event in the same batch) or its worker died before the outbox row was removed.

Writers do not queue one task per event. The chain head carries `publish_queued_at`, read and set
under the row lock every append takes anyway: the first event of a burst queues the publishing
task (after its commit) and marks the head; later appends see the mark and queue nothing. The task
hands over the events in seq order, in batches, then clears the mark and hands over whatever was
committed before it cleared it. So an event that found the mark was committed before the mark was
cleared, and the task that cleared it reads it; one committed after finds no mark and queues the
next task. A mark older than MODELGATE_EVENT_PUBLISH_PENDING_SECONDS is not trusted (its message
may be lost: broker flushed, process killed between commit and send, task killed mid-run), and the
beat sweeper still publishes whatever stays in the outbox past
MODELGATE_EVENT_REPUBLISH_AFTER_SECONDS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from registry.models import Event, EventChainHead, EventOutbox

logger = logging.getLogger(__name__)

Consumer = Callable[[Event], None]

# Events handed over per transaction of the publishing task.
PUBLISH_BATCH = 200
# The longest a publishing run lingers for more events before it clears the head's mark.
LINGER_LIMIT_SECONDS = 1.0


@cache
def _consumers(paths: tuple[str, ...]) -> list[Consumer]:
    return [import_string(path) for path in paths]


def event_consumers() -> list[Consumer]:
    return _consumers(tuple(settings.MODELGATE_EVENT_CONSUMERS))


def publish_due(queued_at: datetime | None, now: datetime) -> bool:
    """Whether an append must queue the publishing task: no task is marked as queued, or the
    mark is too old to trust."""
    if queued_at is None:
        return True
    return now - queued_at >= timedelta(seconds=settings.MODELGATE_EVENT_PUBLISH_PENDING_SECONDS)


def events_publish_on_commit() -> None:
    """Queue the publishing task once the surrounding transaction commits."""
    from registry.tasks import events_publish as task

    def send() -> None:
        try:
            task.delay()
        except Exception:
            # The broker is down: a later append (once the mark is stale) or the sweeper
            # publishes the events from the outbox.
            logger.warning("could not queue the publishing of events", exc_info=True)

    transaction.on_commit(send)


def _hand_to_consumers(entries: Sequence[EventOutbox], consumers: Sequence[Consumer]) -> None:
    """Hand `entries` to every consumer, in order, in one savepoint; raises what a consumer
    raised, its batch's writes rolled back."""
    with transaction.atomic():
        for entry in entries:
            for consumer in consumers:
                consumer(entry.event)


def _hand_over_one(entry: EventOutbox, consumers: Sequence[Consumer]) -> bool:
    """Hand one locked outbox entry to every consumer; on failure count it on the row."""
    try:
        # In a savepoint: a consumer failing in the database rolls back its own writes and
        # leaves the transaction usable, so the failure is still counted below.
        _hand_to_consumers([entry], consumers)
    except Exception as exc:
        logger.exception("publishing event %s failed", entry.pk)
        EventOutbox.objects.filter(pk=entry.pk).update(
            attempts=entry.attempts + 1, last_error=repr(exc)[:2000]
        )
        return False
    return True


def _hand_over(entries: list[EventOutbox]) -> list[int]:
    """Hand locked outbox entries to every consumer, in order; returns the seqs that went.

    The whole batch goes in one savepoint (two round trips per event less than one each). If
    any event fails, the batch's writes are rolled back and its events handed over again one by
    one, each in a savepoint of its own, so the failing one is counted and the others go: the
    events before it (and the failing one) reach the consumers twice, which is why they must be
    idempotent. A batch of one goes straight to its own savepoint.
    """
    consumers = event_consumers()
    if not consumers:
        return [entry.pk for entry in entries]
    if len(entries) == 1:
        return [entries[0].pk] if _hand_over_one(entries[0], consumers) else []
    try:
        _hand_to_consumers(entries, consumers)
    except Exception:
        logger.info("a batch of %d events failed to publish; publishing one by one", len(entries))
    else:
        return [entry.pk for entry in entries]
    return [entry.pk for entry in entries if _hand_over_one(entry, consumers)]


def _outbox_locked(**filters: object) -> list[EventOutbox]:
    return list(
        EventOutbox.objects.select_for_update(of=("self",))
        .select_related("event")
        .filter(**filters)
        .order_by("pk")[:PUBLISH_BATCH]
    )


def events_publish() -> int:
    """Hand every event committed so far to the consumers, in seq order; returns how many went.

    The head's mark stays set while this runs, so appends meanwhile queue nothing and leave their
    events to it. While events keep coming it lingers (MODELGATE_EVENT_PUBLISH_LINGER_SECONDS
    between passes, for at most LINGER_LIMIT_SECONDS), so a steady stream of writes is handed
    over a few events per pass and one task per second instead of one task each. Then it clears
    the mark, reads how far the chain got and hands over what came in between (see the module
    doc). Rows are locked waiting, not skipped, so two runs at once take turns and consumers
    still see events in order. Rows that failed before are left to the sweeper, as is a row that
    fails now (it is counted and this run goes on).
    """
    upto = _head_seq()
    published = _drain(after=0, upto=upto)
    linger = settings.MODELGATE_EVENT_PUBLISH_LINGER_SECONDS
    # Well within the time a mark is trusted, so appends never queue a second run meanwhile.
    until = time.monotonic() + min(
        LINGER_LIMIT_SECONDS, settings.MODELGATE_EVENT_PUBLISH_PENDING_SECONDS / 2
    )
    while linger > 0 and time.monotonic() + linger < until:
        time.sleep(linger)
        last = _head_seq()
        if last is None or upto is None or last <= upto:
            break  # nothing came in while it waited: the stream has paused
        published += _drain(after=upto, upto=last)
        upto = last
    EventChainHead.objects.filter(pk=1).update(publish_queued_at=None)
    # Every event up to the head's seq is committed (the head moves in the event's
    # transaction); a later one found no mark and queued another run.
    last = _head_seq()
    if last is None or upto is None or last > upto:
        published += _drain(after=upto or 0, upto=last)
    return published


def _head_seq() -> int | None:
    return EventChainHead.objects.filter(pk=1).values_list("seq", flat=True).first()


def _drain(*, after: int, upto: int | None) -> int:
    """Hand over the unfailed outbox rows after `after` up to `upto` (None: no bound)."""
    bound = {} if upto is None else {"pk__lte": upto}
    published = 0
    while True:
        with transaction.atomic():
            entries = _outbox_locked(pk__gt=after, attempts=0, **bound)
            if not entries:
                break
            done = _hand_over(entries)
            if done:
                EventOutbox.objects.filter(pk__in=done).delete()
        published += len(done)
        after = entries[-1].pk
        if len(entries) < PUBLISH_BATCH:
            break  # the statement saw every committed row in range (they are all committed)
    return published


def event_publish(*, seq: int) -> bool:
    """Hand one event to every consumer, then drop it from the outbox (the sweeper's way).

    Returns False when the event was already published (or is being published by another
    worker, which holds the outbox row lock), or when a consumer failed.
    """
    with transaction.atomic():
        entry = (
            EventOutbox.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event")
            .filter(pk=seq)
            .first()
        )
        if entry is None or not _hand_over_one(entry, event_consumers()):
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
