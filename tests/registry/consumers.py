"""Event consumers for the publishing tests, named in MODELGATE_EVENT_CONSUMERS by dotted path."""

from __future__ import annotations

from registry.models import Event, EventChainHead

received: list[tuple[int, str]] = []


def record(event: Event) -> None:
    """Remember which event was handed over."""
    received.append((event.seq, event.type))


def explode(event: Event) -> None:
    """Fail like a consumer whose downstream system is unreachable."""
    raise RuntimeError(f"downstream unavailable for event {event.seq}")


def db_error(event: Event) -> None:
    """Fail inside the database, as a consumer writing a duplicate row would."""
    EventChainHead.objects.create(pk=1)
