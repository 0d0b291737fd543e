from celery import shared_task

from webhooks import sending


@shared_task(name="webhooks.tasks.deliveries_send")
def deliveries_send(pks: list[int]) -> int:
    """Send a batch of deliveries (sending.DISPATCH_CHUNK at most); returns how many were taken."""
    return len(sending.deliveries_send(pks=pks))


@shared_task(name="webhooks.tasks.delivery_send")
def delivery_send(pk: int) -> str | None:
    # One delivery per message: what was queued before batches, still in a broker when upgrading.
    return sending.delivery_send(pk=pk)


@shared_task(name="webhooks.tasks.deliveries_sweep")
def deliveries_sweep() -> int:
    """Hand out due retries and deliveries the broker or a worker lost (beat, every 5 s)."""
    return sending.deliveries_sweep()
