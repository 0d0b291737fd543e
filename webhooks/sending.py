"""Sending deliveries: claim, sign, POST, record the attempt, schedule the retry.

Retries live in the database (`next_attempt_at`), not in the broker: the sweeper hands due
deliveries to workers, and also re-hands deliveries whose message the broker lost or whose
worker died while sending (its lease ran out). A receiver can get a delivery twice in those
cases; it de-duplicates by `webhook-id`, which never changes for a delivery.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webhooks import crypto, http, signing
from webhooks.choices import DeliveryState, Flavor, SubscriptionStatus
from webhooks.models import Attempt, Delivery, Subscription

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
JITTER = 0.2
# Retry-After is honoured up to a day; longer asks fall back to the schedule.
RETRY_AFTER_MAX = 24 * 3600.0


def delivery_dispatch_on_commit(ids: list[int]) -> None:
    """Hand deliveries to workers once the transaction that made them commits."""
    if not ids:
        return

    def send() -> None:
        from webhooks.tasks import delivery_send as task

        for pk in ids:
            try:
                task.delay(pk)
            except Exception:
                # The broker is down: the sweeper hands them out once it is back.
                logger.warning("could not queue webhook delivery %s", pk, exc_info=True)
                return

    transaction.on_commit(send)


def retry_delay(attempt: int, *, retry_after: float | None = None) -> float | None:
    """Seconds until the retry after failed attempt number `attempt` (1-based), jittered by
    ±20 %; None when the schedule is used up. A receiver's Retry-After is a floor."""
    schedule = settings.MODELGATE_WEBHOOK_RETRY_SCHEDULE
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311
    if retry_after is not None and 0 < retry_after <= RETRY_AFTER_MAX:
        delay = max(delay, retry_after)
    return delay


def is_retryable(status_code: int | None) -> bool:
    """Network errors (no status), 5xx, 408 and 429 are worth another try; the rest are not."""
    return status_code is None or status_code >= 500 or status_code in (408, 429)


def request_headers(delivery: Delivery, subscription: Subscription, timestamp: int) -> dict:
    """The headers of one attempt: the subscription's own, then the signed ones (which win)."""
    headers = crypto.decrypt_headers(subscription.headers_encrypted)
    body = delivery.body.encode()
    msg_id = str(delivery.uid)
    headers.update(
        {
            "content-type": "application/json",
            "user-agent": http.USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
        }
    )
    secret = crypto.decrypt(subscription.secret_encrypted)
    secrets = [secret] if secret else []
    if (
        subscription.previous_secret_encrypted
        and subscription.previous_secret_until is not None
        and subscription.previous_secret_until > timezone.now()
    ):
        secrets.append(crypto.decrypt(subscription.previous_secret_encrypted))
    if secrets:
        headers["webhook-signature"] = " ".join(
            signing.standard_signature(s, msg_id, timestamp, body) for s in secrets
        )
    if subscription.flavor == Flavor.MLFLOW:
        headers["X-MLflow-Delivery-Id"] = msg_id
        headers["X-MLflow-Timestamp"] = str(timestamp)
        if secret:
            headers["X-MLflow-Signature"] = signing.mlflow_signature(
                secret, msg_id, timestamp, body
            )
    if subscription.flavor == Flavor.DATABRICKS and secret:
        headers["X-Databricks-Signature"] = signing.databricks_signature(secret, body)
    return headers


def _claim(pk: int, now: datetime, *, force: bool) -> bool:
    """Take the delivery for sending: pending, due (unless forced), not held by a live worker."""
    lease = timedelta(seconds=settings.MODELGATE_WEBHOOK_LEASE_SECONDS)
    claimable = Delivery.objects.filter(pk=pk, state=DeliveryState.PENDING).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    if not force:
        claimable = claimable.filter(next_attempt_at__lte=now)
    return claimable.update(lease_until=now + lease) == 1


def _cancel(delivery: Delivery, reason: str, now: datetime) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.CANCELLED,
        next_attempt_at=None,
        lease_until=None,
        last_error=reason,
        finished_at=now,
    )


def delivery_send(*, pk: int, clock: Clock = timezone.now, force: bool = False) -> str | None:
    """Make one attempt at a due delivery; returns its state afterwards (None if not taken)."""
    now = clock()
    if not _claim(pk, now, force=force):
        return None
    delivery = Delivery.objects.select_related("subscription").get(pk=pk)
    subscription = delivery.subscription
    # A test send is asked for by a person: it goes out whatever the status.
    if not delivery.is_test and subscription.status != SubscriptionStatus.ACTIVE:
        _cancel(delivery, f"The subscription is {subscription.status}.", now)
        return DeliveryState.CANCELLED
    try:
        headers = request_headers(delivery, subscription, int(now.timestamp()))
    except crypto.SecretUnreadable as exc:
        answer = http.Answer(None, "", str(exc), 0)
    else:
        answer = http.post(
            subscription.url, headers, delivery.body.encode(), verify_tls=subscription.verify_tls
        )
    return attempt_record(delivery, answer, started_at=now, clock=clock)


@transaction.atomic
def attempt_record(
    delivery: Delivery, answer: http.Answer, *, started_at: datetime, clock: Clock = timezone.now
) -> str:
    """Write the attempt row and what follows from it: done, retry later, or give up."""
    now = clock()
    number = delivery.attempts + 1
    Attempt.objects.create(
        delivery=delivery,
        number=number,
        started_at=started_at,
        duration_ms=answer.duration_ms,
        status_code=answer.status_code,
        error=answer.error[:2000],
        response_excerpt=answer.excerpt,
    )
    code = answer.status_code
    error = answer.error or (f"The receiver answered {code}." if code is not None else "")
    update: dict[str, Any] = {
        "attempts": number,
        "lease_until": None,
        "dispatched_at": None,
        "last_status_code": code,
    }
    subscription = delivery.subscription
    if code is not None and 200 <= code < 300:
        state = DeliveryState.SUCCEEDED
        update.update(next_attempt_at=None, finished_at=now, last_error="")
        if subscription.failing_since is not None:
            Subscription.objects.filter(pk=subscription.pk).update(failing_since=None)
    else:
        if code is not None and 300 <= code < 400:
            error = f"The receiver answered {code} (a redirect); redirects are not followed."
        delay = (
            retry_delay(number - delivery.retries_from, retry_after=answer.retry_after)
            if is_retryable(code) and not delivery.is_test
            else None
        )
        if delay is None:
            state = DeliveryState.FAILED
            update.update(next_attempt_at=None, finished_at=now)
        else:
            state = DeliveryState.PENDING
            update["next_attempt_at"] = now + timedelta(seconds=delay)
        update["last_error"] = error[:2000]
        disabled = not delivery.is_test and _subscription_failed(subscription, code, error, now)
        if disabled and state == DeliveryState.PENDING:
            # This failure disabled the subscription: its retry would never be sent.
            state = DeliveryState.CANCELLED
            update.update(next_attempt_at=None, finished_at=now)
    Delivery.objects.filter(pk=delivery.pk).update(state=state, **update)
    return state


def _subscription_failed(
    subscription: Subscription, code: int | None, error: str, now: datetime
) -> bool:
    """410 Gone disables at once; otherwise a subscription failing for days is disabled.
    Returns whether this failure disabled it."""
    if code == 410:
        reason = f"Disabled at {now:%Y-%m-%d %H:%M} UTC: the receiver answered 410 Gone."
        subscription_disable(subscription, reason=reason, now=now)
        return True
    Subscription.objects.filter(pk=subscription.pk, failing_since__isnull=True).update(
        failing_since=now
    )
    since = now - timedelta(seconds=settings.MODELGATE_WEBHOOK_DISABLE_AFTER_SECONDS)
    failing_long = Subscription.objects.filter(
        pk=subscription.pk, status=SubscriptionStatus.ACTIVE, failing_since__lte=since
    ).exists()
    if failing_long:
        reason = (
            f"Disabled at {now:%Y-%m-%d %H:%M} UTC: every delivery has failed since "
            f"{subscription.failing_since or now:%Y-%m-%d %H:%M} UTC. Last error: {error}"
        )
        subscription_disable(subscription, reason=reason, now=now)
    return failing_long


def subscription_disable(subscription: Subscription, *, reason: str, now: datetime) -> None:
    """The registry turns a subscription off (its owner sees why); pending deliveries stop."""
    Subscription.objects.filter(pk=subscription.pk).exclude(
        status=SubscriptionStatus.DISABLED
    ).update(status=SubscriptionStatus.DISABLED, status_reason=reason[:4000])
    Delivery.objects.filter(
        subscription_id=subscription.pk, state=DeliveryState.PENDING, is_test=False
    ).exclude(lease_until__gte=now).update(
        state=DeliveryState.CANCELLED,
        next_attempt_at=None,
        finished_at=now,
        last_error="The subscription was disabled.",
    )


def deliveries_sweep(*, clock: Clock = timezone.now, limit: int = 5000) -> int:
    """Hand out deliveries that are due and not in a worker's or the broker's hands.

    Due retries have no message in the broker; first attempts and re-handed ones do, for a
    while: one handed out over MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS ago and still
    pending was lost (flushed broker, dead worker) and is handed out again.
    """
    now = clock()
    stale = now - timedelta(seconds=settings.MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS)
    with transaction.atomic():
        ids = list(
            Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=stale))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Delivery.objects.filter(pk__in=ids).update(dispatched_at=now)
            delivery_dispatch_on_commit(ids)
    return len(ids)
