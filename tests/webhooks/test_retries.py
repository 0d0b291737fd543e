"""Sending one delivery against a real receiver: retries, Retry-After, 410, redirects, timeouts,
disabling after days of failures, the attempt rows, and the sweeper's choices.

The tests run in one transaction (not `transaction=True`): the commit hooks that would hand
deliveries to Celery never fire, so every attempt here is made by calling
`webhooks.sending.delivery_send` with a clock the test moves.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone

from accounts.actors import Actor, Source
from registry.models import Event
from registry.services.models import model_create
from tests.webhooks.receiver import Receiver, Reply
from webhooks import http
from webhooks.choices import DeliveryState, SubscriptionStatus
from webhooks.fanout import event_fan_out
from webhooks.models import Attempt, Delivery, Subscription
from webhooks.sending import deliveries_sweep, delivery_send
from webhooks.services import subscription_create

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


class Clock:
    """The time `delivery_send` and the sweeper see; moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Hook:
    actor: Actor
    subscription: Subscription
    receiver: Receiver
    made: int = 0

    def delivery(self) -> Delivery:
        """A model creation's delivery, made by the fan-out as a worker would make it."""
        self.made += 1
        name = f"model-{self.made}"
        model_create(name=name, actor=self.actor)
        event = Event.objects.get(type="registered_model.created", model_name=name)
        event_fan_out(event)
        return Delivery.objects.get(event=event)

    def refresh(self) -> Subscription:
        self.subscription.refresh_from_db()
        return self.subscription


@pytest.fixture
def hook(admin_user, receiver) -> Hook:
    actor = Actor(user=admin_user, source=Source.SHELL)
    created = subscription_create(
        actor=actor, url=receiver.url, events=["registered_model.created"]
    )
    return Hook(actor, created.subscription, receiver)


def send(delivery: Delivery, clock: Clock) -> str | None:
    state = delivery_send(pk=delivery.pk, clock=clock)
    delivery.refresh_from_db()
    return state


def wait_seconds(delivery: Delivery, clock: Clock) -> float:
    assert delivery.next_attempt_at is not None
    return (delivery.next_attempt_at - clock.now).total_seconds()


def test_a_5xx_is_retried_on_the_schedule_until_it_runs_out(hook, receiver, settings):
    receiver.default = Reply(status=500, body=b"down")
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    first_attempt_at = clock.now
    schedule = settings.MODELGATE_WEBHOOK_RETRY_SCHEDULE
    sent_at = []
    for number, planned in enumerate(schedule, start=1):
        sent_at.append(clock.now)
        assert send(delivery, clock) == DeliveryState.PENDING
        assert delivery.attempts == number
        # The planned wait, jittered by at most 20 % either way.
        assert planned * 0.8 <= wait_seconds(delivery, clock) <= planned * 1.2
        # Not due yet: nothing is taken, nothing is sent.
        clock.now = delivery.next_attempt_at - timedelta(seconds=1)
        assert send(delivery, clock) is None
        assert len(receiver.received) == number
        clock.now = delivery.next_attempt_at
    sent_at.append(clock.now)
    assert send(delivery, clock) == DeliveryState.FAILED

    total = len(schedule) + 1
    assert (delivery.attempts, delivery.next_attempt_at) == (total, None)
    assert delivery.finished_at == clock.now
    assert (delivery.last_status_code, delivery.last_error) == (500, "The receiver answered 500.")
    assert len(receiver.received) == total
    # One webhook-id for every try, each signed at the time of its own attempt.
    assert {hit.headers["webhook-id"] for hit in receiver.received} == {str(delivery.uid)}
    assert [int(hit.headers["webhook-timestamp"]) for hit in receiver.received] == [
        int(at.timestamp()) for at in sent_at
    ]
    attempts = list(Attempt.objects.filter(delivery=delivery))
    assert [(a.number, a.status_code, a.response_excerpt) for a in attempts] == [
        (n, 500, "down") for n in range(1, total + 1)
    ]
    assert [a.started_at for a in attempts] == sent_at
    assert hook.refresh().failing_since == first_attempt_at


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_retryable_answers_schedule_the_first_retry(hook, receiver, status):
    receiver.default = Reply(status=status)
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    assert send(delivery, clock) == DeliveryState.PENDING
    assert 4 <= wait_seconds(delivery, clock) <= 6
    assert (delivery.attempts, delivery.last_status_code) == (1, status)
    assert delivery.lease_until is None
    assert hook.refresh().status == SubscriptionStatus.ACTIVE


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422])
def test_other_4xx_answers_fail_at_once(hook, receiver, status):
    receiver.default = Reply(status=status)
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    assert send(delivery, clock) == DeliveryState.FAILED
    assert (delivery.attempts, delivery.next_attempt_at) == (1, None)
    assert delivery.last_error == f"The receiver answered {status}."
    assert len(receiver.received) == 1
    # A failed delivery counts towards the subscription's run of failures, but does not end it.
    subscription = hook.refresh()
    assert (subscription.status, subscription.failing_since) == (
        SubscriptionStatus.ACTIVE,
        clock.now,
    )


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("120", 120, 120),  # above the 5 s step: honoured as asked
        ("1", 4, 6),  # below it: the schedule's step is the floor
        ("0", 4, 6),
        ("86400", 86400, 86400),  # a day: still honoured
        ("86401", 4, 6),  # longer than a day: ignored
        ("soon", 4, 6),  # unreadable: ignored
    ],
)
def test_a_429_honours_retry_after(hook, receiver, retry_after, low, high):
    receiver.default = Reply(status=429, headers={"Retry-After": retry_after})
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    assert send(delivery, clock) == DeliveryState.PENDING
    assert low <= wait_seconds(delivery, clock) <= high


def test_a_retry_after_date_is_honoured(hook, receiver):
    when = timezone.now() + timedelta(hours=1)
    receiver.default = Reply(status=503, headers={"Retry-After": format_datetime(when, True)})
    delivery = hook.delivery()
    clock = Clock(timezone.now())
    assert send(delivery, clock) == DeliveryState.PENDING
    # The date has whole seconds, and is read against the real clock a moment later.
    assert 3500 <= wait_seconds(delivery, clock) <= 3600


def test_a_410_disables_the_subscription_and_cancels_what_is_pending(hook, receiver):
    receiver.default = Reply(status=410, body=b"gone for good")
    delivery, waiting = hook.delivery(), hook.delivery()
    clock = Clock(max(delivery.next_attempt_at, waiting.next_attempt_at))
    assert send(delivery, clock) == DeliveryState.FAILED
    assert (delivery.attempts, delivery.last_status_code) == (1, 410)

    subscription = hook.refresh()
    assert subscription.status == SubscriptionStatus.DISABLED
    assert subscription.status_reason == (
        f"Disabled at {clock.now:%Y-%m-%d %H:%M} UTC: the receiver answered 410 Gone."
    )
    waiting.refresh_from_db()
    assert (waiting.state, waiting.last_error, waiting.attempts) == (
        DeliveryState.CANCELLED,
        "The subscription was disabled.",
        0,
    )
    assert send(waiting, clock) is None
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_fails_at_once_and_is_not_followed(hook, receiver, status):
    receiver.default = Reply(status=status, headers={"Location": receiver.url + "/moved"})
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    assert send(delivery, clock) == DeliveryState.FAILED
    assert (delivery.attempts, delivery.last_status_code) == (1, status)
    assert delivery.last_error == (
        f"The receiver answered {status} (a redirect); redirects are not followed."
    )
    assert [hit.path for hit in receiver.received] == ["/hook"]


def test_a_hanging_receiver_times_out_and_is_retried(hook, receiver, monkeypatch):
    monkeypatch.setattr(http, "TOTAL_TIMEOUT", 0.5)
    receiver.default = Reply(delay=30)
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    assert send(delivery, clock) == DeliveryState.PENDING
    assert 4 <= wait_seconds(delivery, clock) <= 6
    (attempt,) = Attempt.objects.filter(delivery=delivery)
    assert attempt.status_code is None
    assert attempt.error.startswith("Timed out waiting for the response")
    assert attempt.response_excerpt == ""
    assert delivery.last_error == attempt.error
    assert delivery.last_status_code is None
    assert len(receiver.received) == 1


def test_a_refused_connection_is_an_attempt_without_a_status(hook, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    Subscription.objects.filter(pk=hook.subscription.pk).update(url=f"http://127.0.0.1:{port}/")
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    assert send(delivery, clock) == DeliveryState.PENDING
    (attempt,) = Attempt.objects.filter(delivery=delivery)
    assert (attempt.status_code, attempt.response_excerpt) == (None, "")
    assert attempt.error.startswith("ConnectError:")


def test_attempts_record_status_duration_error_and_the_first_kilobyte(hook, receiver):
    receiver.replies = [
        Reply(status=500, body=b"x" * 5000, delay=0.2),
        Reply(status=200, body="é".encode() * 1000),
    ]
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    first_at = clock.now
    assert send(delivery, clock) == DeliveryState.PENDING
    clock.now = delivery.next_attempt_at
    assert send(delivery, clock) == DeliveryState.SUCCEEDED

    failed, succeeded = Attempt.objects.filter(delivery=delivery)
    assert (failed.number, failed.started_at, failed.status_code, failed.error) == (
        1,
        first_at,
        500,
        "",
    )
    assert failed.response_excerpt == "x" * 1024
    assert failed.duration_ms >= 200  # the receiver waited that long before answering
    assert (succeeded.number, succeeded.started_at, succeeded.status_code) == (2, clock.now, 200)
    # 1024 bytes of two-byte characters: 512 of them.
    assert succeeded.response_excerpt == "é" * 512
    assert (delivery.state, delivery.attempts, delivery.last_error) == (
        DeliveryState.SUCCEEDED,
        2,
        "",
    )
    assert (delivery.next_attempt_at, delivery.finished_at) == (None, clock.now)
    # The success ends the subscription's run of failures.
    assert hook.refresh().failing_since is None


def test_five_days_of_failures_disable_the_subscription(hook, receiver, settings):
    receiver.default = Reply(status=503)
    first = hook.delivery()
    clock = Clock(first.next_attempt_at)
    started = clock.now
    assert send(first, clock) == DeliveryState.PENDING
    assert hook.refresh().failing_since == started

    # Every attempt since then failed too: a second short of five days, still active.
    clock.now = started + 5 * DAY - timedelta(seconds=1)
    assert send(hook.delivery(), clock) == DeliveryState.PENDING
    assert hook.refresh().status == SubscriptionStatus.ACTIVE

    last = hook.delivery()
    clock.now = started + 5 * DAY
    # The attempt that disables the subscription schedules no retry.
    assert send(last, clock) == DeliveryState.CANCELLED
    assert (last.attempts, last.next_attempt_at, last.finished_at) == (1, None, clock.now)
    assert last.last_error == "The receiver answered 503."
    subscription = hook.refresh()
    assert subscription.status == SubscriptionStatus.DISABLED
    assert subscription.status_reason == (
        f"Disabled at {clock.now:%Y-%m-%d %H:%M} UTC: every delivery has failed since "
        f"{started:%Y-%m-%d %H:%M} UTC. Last error: The receiver answered 503."
    )
    # Nothing of it is sent any more.
    assert Delivery.objects.filter(state=DeliveryState.CANCELLED).count() == 3
    assert len(receiver.received) == 3
    assert deliveries_sweep(clock=Clock(clock.now + DAY)) == 0


def test_a_success_restarts_the_count_of_days(hook, receiver):
    receiver.replies = [Reply(status=500), Reply(status=200), Reply(status=500)]
    receiver.default = Reply(status=500)
    first = hook.delivery()
    clock = Clock(first.next_attempt_at)
    started = clock.now
    assert send(first, clock) == DeliveryState.PENDING
    clock.now = started + 4 * DAY
    assert send(hook.delivery(), clock) == DeliveryState.SUCCEEDED
    assert hook.refresh().failing_since is None
    clock.now = started + 4 * DAY + timedelta(seconds=1)
    assert send(hook.delivery(), clock) == DeliveryState.PENDING
    clock.now = started + 6 * DAY
    assert send(hook.delivery(), clock) == DeliveryState.PENDING
    subscription = hook.refresh()
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.failing_since == started + 4 * DAY + timedelta(seconds=1)


@pytest.mark.parametrize("status", [SubscriptionStatus.DISABLED, SubscriptionStatus.TEST_MODE])
def test_a_delivery_of_an_inactive_subscription_is_cancelled_unsent(hook, receiver, status):
    delivery = hook.delivery()
    Subscription.objects.filter(pk=hook.subscription.pk).update(status=status)
    clock = Clock(delivery.next_attempt_at)
    assert send(delivery, clock) == DeliveryState.CANCELLED
    assert (delivery.attempts, delivery.last_error) == (0, f"The subscription is {status}.")
    assert receiver.received == []
    assert Attempt.objects.count() == 0


def test_a_delivery_held_by_a_worker_is_not_taken_twice(hook, receiver, settings):
    delivery = hook.delivery()
    clock = Clock(delivery.next_attempt_at)
    lease = timedelta(seconds=settings.MODELGATE_WEBHOOK_LEASE_SECONDS)
    Delivery.objects.filter(pk=delivery.pk).update(lease_until=clock.now + lease)
    assert send(delivery, clock) is None
    clock.now += lease  # the lease ends at this instant: still held
    assert send(delivery, clock) is None
    clock.advance(0.001)
    assert send(delivery, clock) == DeliveryState.SUCCEEDED
    assert len(receiver.received) == 1


def test_the_sweeper_hands_out_what_no_one_else_holds(
    hook, receiver, settings, django_capture_on_commit_callbacks
):
    settings.MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS = 30
    settings.MODELGATE_WEBHOOK_LEASE_SECONDS = 60
    receiver.default = Reply(status=500)
    queued, retrying, held = hook.delivery(), hook.delivery(), hook.delivery()
    clock = Clock(max(d.next_attempt_at for d in (queued, retrying, held)))
    assert send(retrying, clock) == DeliveryState.PENDING  # its retry is due in about 5 s
    Delivery.objects.filter(pk=held.pk).update(lease_until=clock.now + timedelta(seconds=60))

    def sweep(seconds_later: float) -> list[int]:
        before = dict(Delivery.objects.values_list("pk", "dispatched_at"))
        with django_capture_on_commit_callbacks() as callbacks:
            count = deliveries_sweep(clock=Clock(clock.now + timedelta(seconds=seconds_later)))
        after = dict(Delivery.objects.values_list("pk", "dispatched_at"))
        swept = sorted(pk for pk in after if after[pk] != before[pk])
        assert (len(swept), len(callbacks)) == (count, 1 if count else 0)
        return swept

    # At once: the queued one's message is presumably still in the broker, the retry is not
    # due, the held one is being sent.
    assert sweep(0) == []
    # The retry falls due; the queued one's message is not lost yet.
    assert sweep(10) == [retrying.pk]
    # Over 30 s after its hand-out the queued delivery's message counts as lost: handed out
    # again, once; the retry was handed out 21 s ago and waits.
    assert sweep(31) == [queued.pk]
    assert sweep(32) == []
    # The held one's lease runs out (the worker died): handed out again, and so is the retry
    # whose hand-out is older than 30 s by then.
    assert sweep(61) == sorted([held.pk, retrying.pk])
    # Finished deliveries are never handed out.
    Delivery.objects.update(state=DeliveryState.SUCCEEDED, next_attempt_at=None)
    assert sweep(3600) == []
