"""Sending deliveries: claim, sign, POST, record the attempt, schedule the retry.

Retries live in the database (`next_attempt_at`), not in the broker: the sweeper hands due
deliveries to workers, and also re-hands deliveries whose message the broker lost or whose
worker died while sending (its lease ran out). A receiver can get a delivery twice in those
cases; it de-duplicates by `webhook-id`, which never changes for a delivery.

Deliveries travel in batches: a task carries up to DISPATCH_CHUNK ids, claims them in one
transaction, POSTs them concurrently and records the successes in one transaction (each failure
on its own). A delivery that goes wrong for an unexpected reason is logged and keeps its lease, so
the sweeper hands it out again; the others in its batch are recorded as usual.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from webhooks import crypto, http, signing
from webhooks.choices import DeliveryState, Flavor, SubscriptionStatus
from webhooks.models import Attempt, Delivery, Subscription

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
JITTER = 0.2
# Retry-After is honoured up to a day; longer asks fall back to the schedule.
RETRY_AFTER_MAX = 24 * 3600.0
# Deliveries per send task.
DISPATCH_CHUNK = 16
# A batch's deliveries to one receiver origin go over at most this many connections at once, one
# after the other on each; different origins are sent to at the same time.
LANES_PER_ORIGIN = 4
# Threads per process for the lanes of batches; created as needed, so it is a ceiling (about the
# Celery threads times DISPATCH_CHUNK), not a cost.
SEND_THREADS = 256
# A POST is started only while this much of its lease is left (or half the lease, if shorter):
# the attempt is recorded before the lease ends, so no other worker sends the delivery meanwhile.
LEASE_MARGIN = http.TOTAL_TIMEOUT + 15.0


def delivery_dispatch_on_commit(ids: list[int]) -> None:
    """Hand deliveries to workers, DISPATCH_CHUNK per task, once the transaction commits."""
    if not ids:
        return
    chunks = [ids[start : start + DISPATCH_CHUNK] for start in range(0, len(ids), DISPATCH_CHUNK)]

    def send() -> None:
        from webhooks.tasks import deliveries_send as task

        for chunk in chunks:
            try:
                task.delay(chunk)
            except Exception:
                # The broker is down: the sweeper hands them out once it is back.
                logger.warning("could not queue webhook deliveries %s", chunk, exc_info=True)
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


def lease_end(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.MODELGATE_WEBHOOK_LEASE_SECONDS)


def _claim(pks: list[int], now: datetime, *, force: bool) -> list[Delivery]:
    """Take deliveries for sending: pending, due (unless forced), not held by a live worker.

    Returns the ones taken, with their subscriptions, leased until `now` + the lease. Rows
    another worker is claiming at this moment are skipped, not waited for.
    """
    claimable = (
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("subscription")
        .filter(pk__in=pks, state=DeliveryState.PENDING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    )
    if not force:
        claimable = claimable.filter(next_attempt_at__lte=now)
    until = lease_end(now)
    with transaction.atomic():
        deliveries = list(claimable.order_by("pk"))
        if deliveries:
            Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(lease_until=until)
    for delivery in deliveries:
        delivery.lease_until = until
    return deliveries


def _cancel(delivery: Delivery, reason: str, now: datetime) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.CANCELLED,
        next_attempt_at=None,
        lease_until=None,
        last_error=reason,
        finished_at=now,
    )


def delivery_send(*, pk: int, clock: Clock = timezone.now, force: bool = False) -> str | None:
    """Make one attempt at a due delivery; returns its state afterwards (None if not taken).

    Errors are raised, not logged: the caller (a person's test send) sees them.
    """
    now = clock()
    claimed = _claim([pk], now, force=force)
    if not claimed:
        return None
    delivery = claimed[0]
    if _cancelled(delivery, now):
        return DeliveryState.CANCELLED
    answer = _post(delivery, now)
    return attempts_record([Sent(delivery, answer, now)], clock=clock)[delivery.pk]


def deliveries_send(
    *, pks: list[int], clock: Clock = timezone.now, force: bool = False
) -> dict[int, str]:
    """Make one attempt at each of the due deliveries among `pks`; returns the state of each
    one taken (an unexpected error leaves one out, logged and leased)."""
    now = clock()
    return deliveries_send_claimed(_claim(pks, now, force=force), clock=clock)


class Sent(NamedTuple):
    delivery: Delivery
    answer: http.Answer
    started_at: datetime


def deliveries_send_claimed(
    deliveries: list[Delivery], *, clock: Clock = timezone.now
) -> dict[int, str]:
    """POST deliveries this worker holds the lease of (subscriptions loaded), then record the
    attempts. Different receivers are sent to at the same time, one receiver over at most
    LANES_PER_ORIGIN connections, one delivery after the other on each. Each delivery stands
    alone: one that fails for an unexpected reason is logged and keeps its lease (the sweeper
    hands it out again), as does one whose lease is too near its end to start."""
    states: dict[int, str] = {}
    to_send = []
    for delivery in deliveries:
        try:
            if _cancelled(delivery, clock()):
                states[delivery.pk] = DeliveryState.CANCELLED
            else:
                to_send.append(delivery)
        except Exception:
            logger.exception("sending webhook delivery %s failed", delivery.pk)
    sent = []
    for delivery, outcome in _post_all(to_send, clock):
        if outcome is None:
            logger.warning("webhook delivery %s not sent: its lease is ending", delivery.pk)
        elif isinstance(outcome, BaseException):
            logger.error("sending webhook delivery %s failed", delivery.pk, exc_info=outcome)
        else:
            sent.append(outcome)
    states.update(attempts_record(sent, clock=clock, isolate=True))
    return states


def _cancelled(delivery: Delivery, now: datetime) -> bool:
    subscription = delivery.subscription
    # A test send is asked for by a person: it goes out whatever the status.
    if delivery.is_test or subscription.status == SubscriptionStatus.ACTIVE:
        return False
    _cancel(delivery, f"The subscription is {subscription.status}.", now)
    return True


def _post(delivery: Delivery, now: datetime) -> http.Answer:
    """Sign and POST one delivery; network trouble and unreadable secrets become the answer."""
    subscription = delivery.subscription
    try:
        headers = request_headers(delivery, subscription, int(now.timestamp()))
    except crypto.SecretUnreadable as exc:
        return http.Answer(None, "", str(exc), 0)
    return http.post(
        subscription.url, headers, delivery.body.encode(), verify_tls=subscription.verify_tls
    )


Outcome = Sent | BaseException | None


def _lane(deliveries: list[Delivery], clock: Clock) -> list[tuple[Delivery, Outcome]]:
    """POST one delivery after the other (over one kept-alive connection): each is started only
    while enough of its lease is left for the attempt to be recorded before it ends."""
    margin = min(LEASE_MARGIN, settings.MODELGATE_WEBHOOK_LEASE_SECONDS / 2)
    outcomes: list[tuple[Delivery, Outcome]] = []
    for delivery in deliveries:
        now = clock()
        if delivery.lease_until is None or (delivery.lease_until - now).total_seconds() < margin:
            outcomes.append((delivery, None))
            continue
        try:
            outcomes.append((delivery, Sent(delivery, _post(delivery, now), now)))
        except Exception as exc:
            outcomes.append((delivery, exc))
    return outcomes


def _post_all(deliveries: list[Delivery], clock: Clock) -> list[tuple[Delivery, Outcome]]:
    """Each delivery's attempt (None when not started, the error when one was raised): lanes of
    the same receiver origin, the lanes at the same time (a single one in this thread)."""
    origins: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        parts = urlsplit(delivery.subscription.url)
        origins[f"{parts.scheme}://{parts.netloc}".lower()].append(delivery)
    lanes = [
        same[n :: min(LANES_PER_ORIGIN, len(same))]
        for same in origins.values()
        for n in range(min(LANES_PER_ORIGIN, len(same)))
    ]
    if len(lanes) <= 1:
        return _lane(lanes[0], clock) if lanes else []
    futures = [_executor().submit(_lane, lane, clock) for lane in lanes]
    return [outcome for future in futures for outcome in future.result()]


_executors: dict[int, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The POSTing threads of this process (workers fork: a child makes its own)."""
    pid = os.getpid()
    executor = _executors.get(pid)
    if executor is None:
        with _executors_lock:
            executor = _executors.get(pid)
            if executor is None:
                executor = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="webhook-post")
                _executors[pid] = executor
    return executor


def _succeeded(answer: http.Answer) -> bool:
    return answer.status_code is not None and 200 <= answer.status_code < 300


def attempts_record(
    sent: Iterable[Sent], *, clock: Clock = timezone.now, isolate: bool = False
) -> dict[int, str]:
    """Record the attempts made at leased deliveries; returns each one's state afterwards.

    The successes are written together (one insert, an update per status code); a failure is
    written with what follows from it (retry, give up, disable) on its own. With `isolate`, an
    error recording one is logged and the others are still recorded.
    """
    sent = list(sent)
    successes = [one for one in sent if _succeeded(one.answer)]
    states: dict[int, str] = {}
    if successes:
        try:
            states.update(_successes_record(successes, clock=clock))
        except IntegrityError:
            # An attempt number taken already (a lease that ran out mid-send): each on its own.
            logger.warning("recording %s webhook successes together failed", len(successes))
            for one in successes:
                states.update(_record_one(one, clock, isolate))
    for one in sent:
        if not _succeeded(one.answer):
            states.update(_record_one(one, clock, isolate))
    return states


def _record_one(one: Sent, clock: Clock, isolate: bool) -> dict[int, str]:
    delivery, answer, started_at = one
    try:
        return {delivery.pk: attempt_record(delivery, answer, started_at=started_at, clock=clock)}
    except Exception:
        if not isolate:
            raise
        logger.exception("recording the attempt at webhook delivery %s failed", delivery.pk)
        return {}


def _attempt_row(delivery: Delivery, answer: http.Answer, started_at: datetime) -> Attempt:
    return Attempt(
        delivery=delivery,
        number=delivery.attempts + 1,
        started_at=started_at,
        duration_ms=answer.duration_ms,
        status_code=answer.status_code,
        error=answer.error[:2000],
        response_excerpt=answer.excerpt,
    )


@transaction.atomic
def _successes_record(successes: list[Sent], *, clock: Clock) -> dict[int, str]:
    now = clock()
    Attempt.objects.bulk_create([_attempt_row(*one) for one in successes])
    groups: dict[tuple[int, int | None], list[int]] = defaultdict(list)
    for delivery, answer, _ in successes:
        groups[(delivery.attempts + 1, answer.status_code)].append(delivery.pk)
    for (number, code), pks in groups.items():
        Delivery.objects.filter(pk__in=pks).update(
            state=DeliveryState.SUCCEEDED,
            attempts=number,
            lease_until=None,
            dispatched_at=None,
            last_status_code=code,
            next_attempt_at=None,
            finished_at=now,
            last_error="",
        )
    recovered = {
        one.delivery.subscription_id for one in successes if one.delivery.subscription.failing_since
    }
    if recovered:
        Subscription.objects.filter(pk__in=recovered).update(failing_since=None)
    return {one.delivery.pk: DeliveryState.SUCCEEDED for one in successes}


@transaction.atomic
def attempt_record(
    delivery: Delivery, answer: http.Answer, *, started_at: datetime, clock: Clock = timezone.now
) -> str:
    """Write the attempt row and what follows from it: done, retry later, or give up."""
    now = clock()
    number = delivery.attempts + 1
    _attempt_row(delivery, answer, started_at).save(force_insert=True)
    code = answer.status_code
    error = answer.error or (f"The receiver answered {code}." if code is not None else "")
    update: dict[str, Any] = {
        "attempts": number,
        "lease_until": None,
        "dispatched_at": None,
        "last_status_code": code,
    }
    subscription = delivery.subscription
    if _succeeded(answer):
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

    Due retries have no message in the broker (no `dispatched_at`), nor do deliveries whose
    sending worker died (their lease ran out). A queued delivery has one until a worker takes it:
    it counts as lost (a flushed broker) once it was queued over
    MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS ago and, the queue being first in first out, a
    worker already holds a delivery queued after it — or no worker holds any queued delivery at
    all. A backlog still being worked through is not queued a second time.
    """
    now = clock()
    stale = now - timedelta(seconds=settings.MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS)
    pending = Delivery.objects.filter(state=DeliveryState.PENDING)
    # How far down the queue the workers are: the newest hand-out one of them is sending.
    reached = pending.filter(lease_until__gte=now, dispatched_at__isnull=False).aggregate(
        at=Max("dispatched_at")
    )["at"]
    lost_before = stale if reached is None else min(stale, reached)
    with transaction.atomic():
        ids = list(
            pending.filter(next_attempt_at__lte=now)
            .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=lost_before))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .select_for_update(skip_locked=True)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Delivery.objects.filter(pk__in=ids).update(dispatched_at=now)
            delivery_dispatch_on_commit(ids)
    return len(ids)
