from typing import Any

from celery import shared_task

from accounts.actors import Actor, Source
from workflows import services


def _system(task: Any) -> Actor:
    """The system acting in this run of a task: its events carry the task's id as request id."""
    return Actor.system(source=Source.TASK, request_id=task.request.id or "")


@shared_task(bind=True, name="workflows.tasks.request_apply")
def request_apply(self: Any, request_id: int) -> str | None:
    request = services.request_apply(request_id=request_id, actor=_system(self))
    return request.status if request else None


@shared_task(bind=True, name="workflows.tasks.requests_sweep")
def requests_sweep(self: Any) -> dict[str, int]:
    """Expire overdue requests and apply approved ones whose task never ran."""
    actor = _system(self)
    return {
        "expired": services.requests_expire(actor=actor),
        "applied": services.requests_apply_waiting(actor=actor),
    }
