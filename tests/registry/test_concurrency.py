"""The registry's invariants under real concurrency: threads, each on its own connection.

Django gives every thread its own database connection, so the writers below really race each
other in the database (row locks on PostgreSQL, the IMMEDIATE write lock on SQLite). Each thread
closes its connection when done; on PostgreSQL that hands it back to the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections
from django.db.models import Count

from accounts.actors import Actor
from config.errors import Conflict, NotFound
from registry import selectors, services
from registry.choices import EventType, Stage
from registry.events import GENESIS_HASH, event_hash
from registry.models import Event, EventChainHead, EventOutbox, ModelVersion, RegisteredModel
from tests.factories import make_model, make_version
from tests.registry import consumers

# Generous bounds that only matter when something hangs; the whole file runs in seconds.
START_TIMEOUT = 20.0
JOIN_TIMEOUT = 30.0


class Worker(threading.Thread):
    """Runs `target` once all parties reached the barrier; keeps its result or its exception."""

    def __init__(self, target: Callable[[], Any], barrier: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.barrier = barrier
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.barrier.wait(timeout=START_TIMEOUT)
            self.result = self.target()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            connections.close_all()


def run_together(
    writers: list[Callable[[], Any]], readers: list[Callable[[threading.Event], Any]] = ()
) -> tuple[list[Worker], list[Worker]]:
    """Start writers and readers at once; readers loop until every writer has finished."""
    done = threading.Event()
    barrier = threading.Barrier(len(writers) + len(readers))
    writer_threads = [Worker(target, barrier) for target in writers]
    reader_threads = [Worker(lambda read=read: read(done), barrier) for read in readers]
    for thread in reader_threads + writer_threads:
        thread.start()
    for thread in writer_threads:
        thread.join(JOIN_TIMEOUT)
    done.set()
    for thread in reader_threads:
        thread.join(JOIN_TIMEOUT)
    hung = [thread for thread in writer_threads + reader_threads if thread.is_alive()]
    assert hung == [], f"{len(hung)} threads did not finish"
    return writer_threads, reader_threads


def errors_of(threads: list[Worker]) -> list[BaseException]:
    return [thread.error for thread in threads if thread.error is not None]


def assert_chain_valid() -> list[Event]:
    """The whole log: seq 1, 2, 3 … with no gap, each row chained to the one before."""
    events = list(Event.objects.order_by("seq"))
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    prev_hash = GENESIS_HASH
    for event in events:
        assert event.prev_hash == prev_hash, f"event #{event.seq} does not follow its previous"
        assert event_hash(event) == event.hash, f"event #{event.seq} does not hash to its hash"
        prev_hash = event.hash
    head = EventChainHead.objects.get(pk=1)
    assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
    return events


def last_event(model: RegisteredModel, type: str) -> Event:
    return Event.objects.filter(model_id=model.pk, type=type).order_by("-seq").first()


@pytest.mark.django_db(transaction=True)
def test_concurrent_version_creation_numbers_1_to_50_with_a_valid_chain(actor: Actor):
    """Runs on SQLite by default and on PostgreSQL when DATABASE_URL is set."""
    model = make_model(actor)

    def create(n: int) -> int:
        return make_version(actor, model, source=f"s3://models/fraud/{n}").version

    writers, _ = run_together([lambda n=n: create(n) for n in range(50)])

    assert errors_of(writers) == []
    assert sorted(thread.result for thread in writers) == list(range(1, 51))
    versions = ModelVersion.objects.filter(model=model).order_by("version")
    assert list(versions.values_list("version", flat=True)) == list(range(1, 51))
    assert RegisteredModel.objects.get(pk=model.pk).last_version == 50
    events = assert_chain_valid()
    created = [event for event in events if event.type == EventType.VERSION_CREATED]
    assert len(created) == 50
    # The model row lock is held until commit, so numbers are handed out in commit order.
    assert [event.version for event in created] == list(range(1, 51))
    assert [event.after["version"] for event in created] == list(range(1, 51))
    assert [event.type for event in events] == [EventType.MODEL_CREATED] + [
        EventType.VERSION_CREATED
    ] * 50


@pytest.mark.django_db(transaction=True)
def test_versions_created_among_other_writes_on_their_models_never_deadlock(actor: Actor):
    """Version creation locks its model, then the chain head, in one statement on PostgreSQL;
    the other writes lock the model and then the head in two. Any other order would deadlock
    (PostgreSQL aborts one of the two) when they race on the same models."""
    models = [make_model(actor, f"m{n}") for n in range(3)]

    def create(model: RegisteredModel, n: int) -> int:
        return make_version(actor, model, source=f"s3://models/{model.name}/{n}").version

    def tag(model: RegisteredModel, n: int) -> None:
        services.model_tag_set(model=model, actor=actor, key=f"k{n}", value=str(n))

    writers, _ = run_together(
        [lambda m=m, n=n: create(m, n) for m in models for n in range(8)]
        + [lambda m=m, n=n: tag(m, n) for m in models for n in range(8)]
    )

    assert errors_of(writers) == []
    for model in models:
        numbers = ModelVersion.objects.filter(model=model).values_list("version", flat=True)
        assert sorted(numbers) == list(range(1, 9))
        assert model.tags.count() == 8
    events = assert_chain_valid()
    assert len(events) == 3 + 3 * 8 * 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_are_published_once_each_in_seq_order(actor: Actor, settings):
    """Each commit that finds no publishing run marked queues one (run in the writer's thread
    here, tasks being eager), so runs overlap with each other and with appends."""
    settings.MODELGATE_EVENT_CONSUMERS = ["tests.registry.consumers.record"]
    settings.MODELGATE_EVENT_PUBLISH_PENDING_SECONDS = 5
    consumers.received.clear()
    model = make_model(actor)

    writers, _ = run_together(
        [lambda n=n: make_version(actor, model, source=f"s3://models/fraud/{n}") for n in range(40)]
    )

    assert errors_of(writers) == []
    assert [seq for seq, _ in consumers.received] == list(range(1, 42))
    assert EventOutbox.objects.count() == 0
    assert_chain_valid()
    consumers.received.clear()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_alias_moves_never_leave_a_reader_without_a_version(actor: Actor):
    model = make_model(actor)
    numbers = [make_version(actor, model).version for _ in range(5)]
    services.alias_set(model=model, alias="champion", version=1, actor=actor)
    live_pks = set(ModelVersion.objects.filter(model=model).values_list("pk", flat=True))

    def reader(done: threading.Event) -> dict[str, Any]:
        seen: dict[str, Any] = {"reads": 0, "missing": 0, "versions": set()}
        while True:
            state = selectors.alias_state(
                actor=Actor.system(), model_name=model.name, alias="champion"
            )
            try:
                found = selectors.alias_get(model=model, alias="champion").version
            except NotFound:
                found = None
            seen["reads"] += 1
            if state is None or state[0] not in live_pks or found is None or found.is_deleted:
                seen["missing"] += 1
            else:
                seen["versions"].add(found.version)
            if done.is_set():
                return seen

    def move(n: int) -> int:
        target = numbers[n % len(numbers)]
        return services.alias_set(
            model=model, alias="champion", version=target, actor=actor
        ).version.version

    writers, readers = run_together([lambda n=n: move(n) for n in range(20)], [reader])

    assert errors_of(writers) == []
    assert errors_of(readers) == []
    seen = readers[0].result
    assert seen["reads"] > 0
    assert seen["missing"] == 0
    assert seen["versions"] <= set(numbers)
    assert Event.objects.filter(model_id=model.pk, type=EventType.ALIAS_SET).count() == 21
    final = selectors.alias_get(model=model, alias="champion").version.version
    assert final == last_event(model, EventType.ALIAS_SET).after["version"]
    assert_chain_valid()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_production_transitions_never_show_two_or_zero(actor: Actor):
    models = [make_model(actor, name=name) for name in ("fraud-scorer", "churn-model")]
    versions = {model.pk: [make_version(actor, model) for _ in range(6)] for model in models}
    for model in models:
        services.version_transition(
            version=versions[model.pk][0], stage=Stage.PRODUCTION, actor=actor
        )
    model_pks = list(versions)

    def reader(done: threading.Event) -> dict[str, Any]:
        seen: dict[str, Any] = {"reads": 0, "bad": []}
        while True:
            # One statement, so one snapshot of every model's Production versions.
            counts = dict(
                ModelVersion.objects.live()
                .filter(model_id__in=model_pks, stage=Stage.PRODUCTION)
                .values_list("model_id")
                .annotate(n=Count("pk"))
                .order_by()
            )
            seen["reads"] += 1
            seen["bad"].extend((pk, counts.get(pk, 0)) for pk in model_pks if counts.get(pk) != 1)
            if done.is_set():
                return seen

    def promote(version: ModelVersion) -> int:
        return services.version_transition(
            version=version, stage=Stage.PRODUCTION, actor=actor, archive_existing=True
        ).version

    writers, readers = run_together(
        [
            lambda version=version: promote(version)
            for model in models
            for version in versions[model.pk][1:]
        ],
        [reader, reader],
    )

    assert errors_of(writers) == []
    assert errors_of(readers) == []
    for reader_thread in readers:
        assert reader_thread.result["reads"] > 0
        assert reader_thread.result["bad"] == []
    for model in models:
        production = list(
            ModelVersion.objects.live()
            .filter(model=model, stage=Stage.PRODUCTION)
            .values_list("version", flat=True)
        )
        last = Event.objects.filter(
            model_id=model.pk,
            type=EventType.VERSION_STAGE_TRANSITIONED,
            after__stage=Stage.PRODUCTION,
        ).order_by("-seq")
        assert production == [last.first().version]
        assert ModelVersion.objects.filter(model=model, stage=Stage.ARCHIVED).count() == 5
    assert_chain_valid()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_compare_and_set_lets_exactly_one_writer_win(actor: Actor):
    model = make_model(actor)
    numbers = [make_version(actor, model).version for _ in range(11)]
    services.alias_set(model=model, alias="champion", version=1, actor=actor)
    events_before = Event.objects.count()

    def move(target: int) -> int:
        services.alias_set(
            model=model, alias="champion", version=target, actor=actor, expected_version=1
        )
        return target

    writers, _ = run_together([lambda target=target: move(target) for target in numbers[1:]])

    winners = [thread.result for thread in writers if thread.error is None]
    assert len(winners) == 1
    losers = errors_of(writers)
    assert len(losers) == 9
    assert all(isinstance(error, Conflict) for error in losers), losers
    assert selectors.alias_get(model=model, alias="champion").version.version == winners[0]
    assert Event.objects.count() == events_before + 1
    assert last_event(model, EventType.ALIAS_SET).after == {
        "alias": "champion",
        "version": winners[0],
    }
    assert_chain_valid()
