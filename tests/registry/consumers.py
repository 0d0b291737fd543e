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


def fail_on_2(event: Event) -> None:
    """Fail for event 2 only."""
    if event.seq == 2:
        raise RuntimeError("downstream refused event 2")


def record_and_append_once(event: Event) -> None:
    """Remember the event; on event 1, append another one, as a writer committing while a
    publishing run works would."""
    from accounts.actors import Actor
    from registry import services

    record(event)
    if event.seq == 1:
        services.model_create(name="meanwhile", actor=Actor.system())
