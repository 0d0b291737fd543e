from celery import shared_task

from registry import publishing
from registry.history import checkpoints


@shared_task(name="registry.tasks.events_publish")
def events_publish() -> int:
    """Hand every committed event to the consumers, in order (queued once per burst)."""
    return publishing.events_publish()


@shared_task(name="registry.tasks.event_publish")
def event_publish(seq: int) -> bool:
    """One event (messages queued before events_publish existed are still accepted)."""
    return publishing.event_publish(seq=seq)


@shared_task(name="registry.tasks.events_republish_stale")
def events_republish_stale() -> int:
    return publishing.events_republish_stale()


@shared_task(name="registry.tasks.checkpoint_create")
def checkpoint_create() -> int | None:
    """Sign the chain head when it moved since the last checkpoint (beat, every few minutes)."""
    checkpoint = checkpoints.checkpoint_create()
    return checkpoint.seq if checkpoint is not None else None
