from celery import shared_task

from webhooks import sending


@shared_task(name="webhooks.tasks.delivery_send")
def delivery_send(pk: int) -> str | None:
    return sending.delivery_send(pk=pk)


@shared_task(name="webhooks.tasks.deliveries_sweep")
def deliveries_sweep() -> int:
    """Hand out due retries and deliveries the broker or a worker lost (beat, every 5 s)."""
    return sending.deliveries_sweep()
