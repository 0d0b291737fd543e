"""Deliveries in batches: the fan-out of a transaction's events handed out in chunks, a batch
sent at once with each delivery standing alone, the lone delivery sent by the publishing task,
connections reused without getting past the guard, and the sweeper leaving a backlog alone."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.actors import Actor, Source
from registry.models import Event
from registry.services.models import model_create, model_tag_set
from tests.webhooks.receiver import Reply
from webhooks import fanout, http, sending, ssrf, tasks
from webhooks.choices import DeliveryState
from webhooks.fanout import event_fan_out
from webhooks.models import Attempt, Delivery, Subscription
from webhooks.services import subscription_create

pytestmark = pytest.mark.django_db

EVENT = "registered_model_tag.set"


@pytest.fixture
def actor(admin_user) -> Actor:
    return Actor(user=admin_user, source=Source.SHELL)


@pytest.fixture
def subscription(actor, receiver) -> Subscription:
    return subscription_create(actor=actor, url=receiver.url, events=[EVENT]).subscription


@pytest.fixture
def queued(monkeypatch) -> list[list[int]]:
    """The id lists of the send tasks queued (instead of running them)."""
    calls: list[list[int]] = []
    monkeypatch.setattr(tasks.deliveries_send, "delay", lambda pks: calls.append(list(pks)))
    return calls


def tag_events(actor: Actor, count: int, django_capture_on_commit_callbacks) -> list[Event]:
    """`count` tag-set events, committed without being published (their callbacks dropped)."""
    model = model_create(name="fraud", actor=actor)
    with django_capture_on_commit_callbacks():
        for n in range(count):
            model_tag_set(model=model, actor=actor, key=f"k{n}", value="v")
    return list(Event.objects.filter(type=EVENT).order_by("seq"))


def test_a_transactions_deliveries_are_handed_out_together_in_chunks(
    actor, subscription, queued, receiver, django_capture_on_commit_callbacks
):
    events = tag_events(actor, 40, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        for event in events:
            event_fan_out(event)
    deliveries = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
    assert len(deliveries) == 40
    assert [len(chunk) for chunk in queued] == [16, 16, 8]
    assert [pk for chunk in queued for pk in chunk] == deliveries
    assert receiver.received == []


def fan_out_then_fail(event: Event) -> None:
    with transaction.atomic():
        event_fan_out(event)
        raise RuntimeError("a later consumer failed")


def test_a_rolled_back_event_hands_out_nothing(
    actor, subscription, queued, django_capture_on_commit_callbacks
):
    first, second, third = tag_events(actor, 3, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        # As the publishing task does: each event in a savepoint; the first one's fails after
        # its fan-out, so its deliveries (and the handout it registered) are rolled back.
        with pytest.raises(RuntimeError):
            fan_out_then_fail(first)
        event_fan_out(second)
        event_fan_out(third)
    kept = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
    assert list(Delivery.objects.values_list("event_id", flat=True).order_by("pk")) == [
        second.pk,
        third.pk,
    ]
    assert queued == [kept]


@pytest.mark.django_db(transaction=True)
def test_the_batched_publishing_task_queues_even_a_lone_delivery(
    actor, subscription, receiver, queued
):
    model = model_create(name="fraud", actor=actor)
    model_tag_set(model=model, actor=actor, key="k", value="v")
    delivery = Delivery.objects.get()
    # Queued, not sent by the publishing task: a hanging receiver would hold up every event.
    assert queued == [[delivery.pk]]
    assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 0)
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_a_one_event_publishing_task_sends_its_lone_delivery_itself(
    actor, subscription, receiver, queued, monkeypatch, settings
):
    consumers = settings.MODELGATE_EVENT_CONSUMERS
    settings.MODELGATE_EVENT_CONSUMERS = []  # published to no one: fanned out below
    model = model_create(name="fraud", actor=actor)
    model_tag_set(model=model, actor=actor, key="k", value="v")
    settings.MODELGATE_EVENT_CONSUMERS = consumers
    event = Event.objects.get(type=EVENT)

    class Task:
        name = "registry.tasks.event_publish"

    monkeypatch.setattr(fanout, "current_task", Task())
    with transaction.atomic():
        event_fan_out(event)
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.lease_until, delivery.dispatched_at) == (
        DeliveryState.SUCCEEDED,
        1,
        None,
        None,
    )
    assert len(receiver.received) == 1
    assert queued == []


def make_deliveries(subscription: Subscription, count: int) -> list[Delivery]:
    now = timezone.now()
    return Delivery.objects.bulk_create(
        Delivery(
            subscription=subscription,
            event_type=EVENT,
            body=json.dumps({"n": n}),
            next_attempt_at=now,
            dispatched_at=now,
        )
        for n in range(count)
    )


def test_a_batch_is_sent_at_once_and_each_failure_recorded_on_its_own(subscription, receiver):
    receiver.respond = lambda hit: Reply(500 if json.loads(hit.body)["n"] == 1 else 200)
    deliveries = make_deliveries(subscription, 3)
    states = sending.deliveries_send(pks=[d.pk for d in deliveries])
    assert states == {
        deliveries[0].pk: DeliveryState.SUCCEEDED,
        deliveries[1].pk: DeliveryState.PENDING,
        deliveries[2].pk: DeliveryState.SUCCEEDED,
    }
    assert len(receiver.received) == 3
    rows = {d.pk: d for d in Delivery.objects.all()}
    assert [(rows[d.pk].attempts, rows[d.pk].lease_until) for d in deliveries] == [(1, None)] * 3
    assert rows[deliveries[1].pk].last_status_code == 500
    assert rows[deliveries[1].pk].next_attempt_at > timezone.now()
    assert sorted(Attempt.objects.values_list("delivery_id", "number", "status_code")) == [
        (deliveries[0].pk, 1, 200),
        (deliveries[1].pk, 1, 500),
        (deliveries[2].pk, 1, 200),
    ]
    # Nothing is due any more: a second run takes none of them.
    assert sending.deliveries_send(pks=[d.pk for d in deliveries]) == {}


def test_a_delivery_failing_unexpectedly_leaves_the_others_recorded(
    subscription, receiver, monkeypatch, caplog
):
    deliveries = make_deliveries(subscription, 3)
    broken = deliveries[1]
    headers = sending.request_headers

    def request_headers(delivery, subscription, timestamp):
        if delivery.pk == broken.pk:
            raise ValueError("a bug")
        return headers(delivery, subscription, timestamp)

    monkeypatch.setattr(sending, "request_headers", request_headers)
    states = sending.deliveries_send(pks=[d.pk for d in deliveries])
    assert states == {
        deliveries[0].pk: DeliveryState.SUCCEEDED,
        deliveries[2].pk: DeliveryState.SUCCEEDED,
    }
    assert len(receiver.received) == 2
    assert f"sending webhook delivery {broken.pk} failed" in caplog.text
    # It keeps its lease and is not recorded: the sweeper hands it out once the lease ends.
    broken.refresh_from_db()
    assert (broken.state, broken.attempts) == (DeliveryState.PENDING, 0)
    assert broken.lease_until is not None
    assert Attempt.objects.filter(delivery=broken).count() == 0
    assert Attempt.objects.count() == 2


def test_a_delivery_whose_lease_is_ending_is_not_sent(subscription, receiver, settings):
    (delivery,) = make_deliveries(subscription, 1)
    now = timezone.now()
    delivery = Delivery.objects.select_related("subscription").get(pk=delivery.pk)
    delivery.lease_until = now + timedelta(seconds=settings.MODELGATE_WEBHOOK_LEASE_SECONDS / 4)
    assert sending.deliveries_send_claimed([delivery]) == {}
    assert receiver.received == []
    assert Attempt.objects.count() == 0


def test_the_batch_task_sends_its_deliveries(subscription, receiver):
    deliveries = make_deliveries(subscription, 2)
    assert tasks.deliveries_send.delay([d.pk for d in deliveries]).get() == 2
    assert Delivery.objects.filter(state=DeliveryState.SUCCEEDED).count() == 2
    assert len(receiver.received) == 2


def test_connections_are_reused_and_still_refused_once_not_allowed(settings, receiver, monkeypatch):
    opened: list[str] = []
    connect = ssrf.GuardedBackend.connect_tcp

    def counting(self, host, port, *args, **kwargs):
        opened.append(host)
        return connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(ssrf.GuardedBackend, "connect_tcp", counting)
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert http.post(receiver.url, {}, b"{}").status_code == 200
    assert http.post(receiver.url, {}, b"{}").status_code == 200
    assert opened == ["127.0.0.1"]
    # The kept-alive connection is not used once the address is no longer allowed.
    settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS = []
    answer = http.post(receiver.url, {}, b"{}")
    assert answer.status_code is None
    assert "a loopback address" in answer.error
    assert len(receiver.received) == 2


def test_the_sweeper_leaves_a_backlog_being_worked_through_alone(
    subscription, settings, django_capture_on_commit_callbacks
):
    settings.MODELGATE_WEBHOOK_REDISPATCH_AFTER_SECONDS = 30
    start = timezone.now()
    working, backlog, later = (make_deliveries(subscription, 2) for _ in range(3))
    # Queued in that order; the workers are on the first two, the rest wait in the broker.
    for batch, offset in ((working, 0), (backlog, 1), (later, 2)):
        Delivery.objects.filter(pk__in=[d.pk for d in batch]).update(
            dispatched_at=start + timedelta(seconds=offset), next_attempt_at=start
        )
    Delivery.objects.filter(pk__in=[d.pk for d in working]).update(
        lease_until=start + timedelta(seconds=100)
    )

    def sweep(seconds_later: float) -> list[int]:
        with django_capture_on_commit_callbacks():
            sending.deliveries_sweep(clock=lambda: start + timedelta(seconds=seconds_later))
        now = start + timedelta(seconds=seconds_later)
        return sorted(Delivery.objects.filter(dispatched_at=now).values_list("pk", flat=True))

    # Long queued, but behind what the workers are sending: still in the broker.
    assert sweep(40) == []
    # A worker takes a delivery queued after them: those before it were lost (flushed broker).
    Delivery.objects.filter(pk=later[0].pk).update(lease_until=start + timedelta(seconds=100))
    assert sweep(45) == sorted(d.pk for d in backlog)
    # No worker holds anything queued: nothing is being worked through, all are handed out.
    Delivery.objects.update(lease_until=None)
    assert sweep(60) == sorted(d.pk for d in [*working, *later])


def test_a_batch_to_one_receiver_goes_over_a_few_kept_alive_connections(
    subscription, receiver, monkeypatch
):
    opened: list[str] = []
    connect = ssrf.GuardedBackend.connect_tcp

    def counting(self, host, port, *args, **kwargs):
        opened.append(host)
        return connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(ssrf.GuardedBackend, "connect_tcp", counting)
    deliveries = make_deliveries(subscription, sending.DISPATCH_CHUNK)
    states = sending.deliveries_send(pks=[d.pk for d in deliveries])
    assert set(states.values()) == {DeliveryState.SUCCEEDED}
    assert len(states) == sending.DISPATCH_CHUNK
    assert len(receiver.received) == sending.DISPATCH_CHUNK
    assert 1 <= len(opened) <= sending.LANES_PER_ORIGIN
    assert Attempt.objects.filter(status_code=200).count() == sending.DISPATCH_CHUNK
