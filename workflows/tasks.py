from celery import shared_task

from workflows import services


@shared_task(name="workflows.tasks.request_apply")
def request_apply(request_id: int) -> str | None:
    request = services.request_apply(request_id=request_id)
    return request.status if request else None


@shared_task(name="workflows.tasks.requests_sweep")
def requests_sweep() -> dict[str, int]:
    """Expire overdue requests and apply approved ones whose task never ran."""
    return {
        "expired": services.requests_expire(),
        "applied": services.requests_apply_waiting(),
    }
