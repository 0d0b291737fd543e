from celery import shared_task

from registry import publishing


@shared_task(name="registry.tasks.event_publish")
def event_publish(seq: int) -> bool:
    return publishing.event_publish(seq=seq)


@shared_task(name="registry.tasks.events_republish_stale")
def events_republish_stale() -> int:
    return publishing.events_republish_stale()
