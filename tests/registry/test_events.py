"""The event log: one event per change, the hash chain, and publishing through the outbox."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.actors import Actor, Source
from config.errors import AlreadyExists, InvalidParameter
from registry import publishing, services, tasks
from registry.choices import Stage
from registry.events import GENESIS_HASH, event_canonical, event_hash
from registry.models import Event, EventChainHead, EventOutbox, ModelVersion, RegisteredModel
from tests.factories import make_model, make_version
from tests.registry import consumers

pytestmark = pytest.mark.django_db

RECORD = "tests.registry.consumers.record"
EXPLODE = "tests.registry.consumers.explode"
DB_ERROR = "tests.registry.consumers.db_error"
FAIL_ON_2 = "tests.registry.consumers.fail_on_2"


@pytest.fixture(autouse=True)
def _received():
    consumers.received.clear()
    yield
    consumers.received.clear()


@pytest.fixture
def record_consumer(settings):
    settings.MODELGATE_EVENT_CONSUMERS = [RECORD]


@pytest.fixture
def debounced(settings):
    """A queued publishing run is trusted for 5 s, as in production (tests/conftest.py turns
    that off for every other test)."""
    settings.MODELGATE_EVENT_PUBLISH_PENDING_SECONDS = 5


def do_everything(actor: Actor) -> None:
    """One call of every service, in an order that exercises each event type once."""
    model = services.model_create(name="m", tags={"team": "risk"}, actor=actor)
    services.model_update(model=model, description="d", actor=actor)
    services.model_tag_set(model=model, key="tier", value="1", actor=actor)
    services.model_tag_delete(model=model, key="tier", actor=actor)
    version = services.version_create(model=model, source="s3://m/1", actor=actor)
    services.version_update(version=version, description="v1", actor=actor)
    services.version_tag_set(version=version, key="k", value="v", actor=actor)
    services.version_tag_delete(version=version, key="k", actor=actor)
    services.version_transition(version=version, stage=Stage.STAGING, actor=actor)
    services.alias_set(model=model, alias="prod", version=1, actor=actor)
    services.alias_delete(model=model, alias="prod", actor=actor)
    services.version_delete(version=version, actor=actor)
    services.model_rename(model=model, new_name="m2", actor=actor)
    services.model_delete(model=model, actor=actor)


def test_one_event_per_change_with_type_subject_and_sequence(actor):
    do_everything(actor)

    rows = list(Event.objects.order_by("seq").values_list("seq", "type", "model_name", "version"))
    assert rows == [
        (1, "registered_model.created", "m", None),
        (2, "registered_model.updated", "m", None),
        (3, "registered_model_tag.set", "m", None),
        (4, "registered_model_tag.deleted", "m", None),
        (5, "model_version.created", "m", 1),
        (6, "model_version.updated", "m", 1),
        (7, "model_version_tag.set", "m", 1),
        (8, "model_version_tag.deleted", "m", 1),
        (9, "model_version.stage_transitioned", "m", 1),
        (10, "model_version_alias.set", "m", 1),
        (11, "model_version_alias.deleted", "m", 1),
        (12, "model_version.deleted", "m", 1),
        (13, "registered_model.renamed", "m2", None),
        (14, "registered_model.deleted", "m2", None),
    ]
    model_ids = set(Event.objects.values_list("model_id", flat=True))
    assert len(model_ids) == 1
    assert None not in model_ids


def test_every_event_carries_the_actor(actor, user):
    do_everything(actor)

    assert set(Event.objects.values_list("actor_id", "actor_name", "actor_token", "source")) == {
        (user.pk, "alice", "", "shell")
    }


def test_event_records_request_id_client_ip_and_token_of_the_actor(user):
    actor = Actor(
        user=user,
        source=Source.API,
        token_prefix="mg_abc",
        request_id="req-42",
        client_ip="10.1.2.3",
    )

    services.model_create(name="m", actor=actor)

    event = Event.objects.get()
    assert event.source == "api"
    assert event.actor_token == "mg_abc"
    assert event.request_id == "req-42"
    assert event.client_ip == "10.1.2.3"
    assert event.hash == event_hash(event)


def test_events_keep_before_and_after_snapshots(actor):
    model = make_model(actor, "m", description="a")
    version = make_version(actor, model)

    services.model_update(model=model, description="b", actor=actor)
    services.version_transition(version=version, stage=Stage.PRODUCTION, actor=actor)

    update, transition = Event.objects.filter(seq__in=[3, 4]).order_by("seq")
    assert update.before == {"name": "m", "description": "a", "tags": {}}
    assert update.after == {"name": "m", "description": "b", "tags": {}}
    assert {k: v for k, v in transition.before.items() if k != "stage"} == {
        k: v for k, v in transition.after.items() if k != "stage"
    }
    assert (transition.before["stage"], transition.after["stage"]) == ("None", "Production")


def test_seq_counts_up_without_gaps_and_the_head_follows(actor):
    model = make_model(actor, "m")
    for _ in range(5):
        make_version(actor, model)

    seqs = list(Event.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == [1, 2, 3, 4, 5, 6]
    head = EventChainHead.objects.get()
    last = Event.objects.get(seq=6)
    assert (head.seq, head.hash) == (6, last.hash)


def test_a_refused_change_does_not_advance_the_chain(actor):
    model = make_model(actor, "m")
    head_before = EventChainHead.objects.values_list("seq", "hash").get()

    with pytest.raises(AlreadyExists, match="already exists"):
        services.model_create(name="m", actor=actor)
    with pytest.raises(InvalidParameter, match="reserved alias"):
        services.alias_set(model=model, alias="latest", version=1, actor=actor)

    assert EventChainHead.objects.values_list("seq", "hash").get() == head_before
    make_version(actor, model)
    assert list(Event.objects.values_list("seq", flat=True)) == [1, 2]


def test_prev_hash_links_each_event_to_the_one_before(actor):
    do_everything(actor)

    events = list(Event.objects.order_by("seq"))
    assert len(events) == 14
    assert events[0].prev_hash == GENESIS_HASH == "0" * 64
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    assert len({event.hash for event in events}) == 14


def test_the_stored_hash_recomputes_from_the_stored_row(actor):
    do_everything(actor)

    for event in Event.objects.order_by("seq"):
        assert len(event.hash) == 64
        assert event.hash == event_hash(event), f"event {event.seq} does not verify"


def test_the_hash_survives_deleting_the_acting_user(actor, user):
    make_model(actor, "m")
    user_id = user.pk

    user.delete()

    event = Event.objects.get()
    assert (event.actor_id, event.actor_name) == (user_id, "alice")
    assert event.hash == event_hash(event)


def test_canonical_form_is_sorted_compact_json(actor):
    make_model(actor, "m")
    event = Event.objects.get()

    canonical = event_canonical(event).decode()

    assert canonical.startswith('{"actor":{"client_ip":"","id":')
    assert ', "' not in canonical
    assert f'"prev_hash":"{GENESIS_HASH}"' in canonical
    assert '"seq":1,' in canonical
    assert '"type":"registered_model.created"' in canonical


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "registered_model.deleted"),
        ("actor_name", "mallory"),
        ("actor_id", 999),
        ("source", "admin"),
        ("request_id", "forged"),
        ("model_name", "other"),
        ("version", 7),
        ("before", {"name": "x"}),
        ("after", {"name": "m", "description": "edited", "tags": {}}),
        ("comment", "edited"),
        ("prev_hash", "f" * 64),
        ("seq", 2),
    ],
)
def test_changing_any_recorded_field_breaks_the_hash(actor, field, value):
    make_model(actor, "m")
    event = Event.objects.get()

    setattr(event, field, value)

    assert event_hash(event) != event.hash


def test_changing_the_time_breaks_the_hash(actor):
    make_model(actor, "m")
    event = Event.objects.get()

    event.created_at += timedelta(microseconds=1)

    assert event_hash(event) != event.hash


# --- publishing -------------------------------------------------------------------------------


def test_an_event_is_handed_over_after_commit_and_leaves_the_outbox(
    actor, record_consumer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        make_model(actor, "m")
        assert consumers.received == []
        assert EventOutbox.objects.count() == 1

    assert len(callbacks) == 1
    assert consumers.received == [(1, "registered_model.created")]
    assert EventOutbox.objects.count() == 0
    assert Event.objects.count() == 1


def test_a_burst_of_events_queues_one_publishing_run_that_hands_all_over_in_order(
    actor, record_consumer, debounced, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        model = make_model(actor, "m")
        make_version(actor, model)
        make_version(actor, model)
        services.alias_set(model=model, alias="prod", version=1, actor=actor)
        services.version_transition(
            version=ModelVersion.objects.get(version=2),
            stage=Stage.PRODUCTION,
            actor=actor,
        )
        # The first append marked the head as having a run queued; the others saw the mark.
        assert EventChainHead.objects.get().publish_queued_at is not None

    assert len(callbacks) == 1
    assert consumers.received == [
        (1, "registered_model.created"),
        (2, "model_version.created"),
        (3, "model_version.created"),
        (4, "model_version_alias.set"),
        (5, "model_version.stage_transitioned"),
    ]
    assert EventOutbox.objects.count() == 0
    # The run cleared the mark before it read the outbox: the next append queues a new run.
    assert EventChainHead.objects.get().publish_queued_at is None
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        make_version(actor, model)
    assert len(callbacks) == 1
    assert consumers.received[-1] == (6, "model_version.created")


def test_an_append_after_the_run_cleared_the_mark_queues_another_run(
    actor, record_consumer, debounced, django_capture_on_commit_callbacks
):
    model = make_model(actor, "m")  # its run is never sent (the test's transaction never commits)
    assert publishing.events_publish() == 1  # a run clears the mark and publishes event 1

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        make_version(actor, model)

    assert len(callbacks) == 1
    assert consumers.received == [(1, "registered_model.created"), (2, "model_version.created")]


def test_a_lost_publishing_message_is_covered_once_the_mark_is_stale(
    actor, record_consumer, debounced, settings, django_capture_on_commit_callbacks
):
    model = make_model(actor, "m")  # queues a run whose message never goes out
    head = EventChainHead.objects.get()
    assert head.publish_queued_at is not None

    # While the mark is fresh, appends trust the queued run and queue nothing.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        make_version(actor, model)
    assert callbacks == []
    assert consumers.received == []

    # Past MODELGATE_EVENT_PUBLISH_PENDING_SECONDS the next append queues a run again; it
    # publishes everything waiting, in order.
    EventChainHead.objects.update(
        publish_queued_at=head.publish_queued_at
        - timedelta(seconds=settings.MODELGATE_EVENT_PUBLISH_PENDING_SECONDS + 1)
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        make_version(actor, model)

    assert len(callbacks) == 1
    assert consumers.received == [
        (1, "registered_model.created"),
        (2, "model_version.created"),
        (3, "model_version.created"),
    ]
    assert EventOutbox.objects.count() == 0


def test_a_lost_publishing_message_is_covered_by_the_sweeper(actor, record_consumer):
    model = make_model(actor, "m")
    make_version(actor, model)  # both runs' messages lost: the events wait in the outbox
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(seconds=31))

    assert publishing.events_republish_stale() == 2

    assert consumers.received == [(1, "registered_model.created"), (2, "model_version.created")]
    assert EventOutbox.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_version_created_on_its_own_is_committed_with_its_event(actor, record_consumer):
    """On PostgreSQL the creation is one statement, its own transaction; the publishing it
    queues runs once it has committed."""
    model = make_model(actor, "m")

    version = make_version(actor, model)

    assert not connection.in_atomic_block
    assert connection.get_autocommit()
    assert ModelVersion.objects.get(pk=version.pk).version == 1
    assert list(Event.objects.order_by("seq").values_list("seq", "type")) == [
        (1, "registered_model.created"),
        (2, "model_version.created"),
    ]
    # The publishing ran after the commit, in order, and emptied the outbox.
    assert consumers.received == [(1, "registered_model.created"), (2, "model_version.created")]
    assert EventOutbox.objects.count() == 0
    # The connection goes on in autocommit: a later write commits on its own.
    make_version(actor, model)
    assert ModelVersion.objects.filter(model=model).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_version_created_inside_a_larger_transaction_is_not_committed_early(actor):
    model = make_model(actor, "m")

    def version_then_failure() -> None:
        with transaction.atomic():
            make_version(actor, model)
            raise RuntimeError("the caller's transaction fails after the version")

    with pytest.raises(RuntimeError, match="fails after the version"):
        version_then_failure()

    assert ModelVersion.objects.filter(model=model).count() == 0
    assert list(Event.objects.values_list("type", flat=True)) == ["registered_model.created"]
    assert EventChainHead.objects.get().seq == 1
    assert RegisteredModel.objects.get(pk=model.pk).last_version == 0


def test_a_version_created_without_a_chain_head_row_continues_the_chain(actor):
    model = make_model(actor, "m")
    EventChainHead.objects.all().delete()  # as after a table flush

    version = make_version(actor, model)

    events = list(Event.objects.order_by("seq"))
    assert [(event.seq, event.type) for event in events] == [
        (1, "registered_model.created"),
        (2, "model_version.created"),
    ]
    assert events[1].prev_hash == events[0].hash
    assert events[1].version == version.version == 1
    head = EventChainHead.objects.get()
    assert (head.seq, head.hash) == (2, events[1].hash)


ODD_TEXT = 'quote " backslash \\ tab \t newline \n bell \x07 é ✓ 😀 </script> \u2028 %s {}'


def test_a_created_versions_hash_recomputes_whatever_its_values_hold(actor):
    """On PostgreSQL the database computes a creation's hash around the canonical text made
    here: escapes, non-ASCII text and placeholders' look-alikes must come out byte for byte."""
    model = make_model(actor, "m")
    tags = {"note": ODD_TEXT, "n": "1"}

    version = services.version_create(
        model=model, source="s3://m/ü", description=ODD_TEXT, run_link=ODD_TEXT, tags=tags,
        actor=actor,
    )  # fmt: skip

    first, event = Event.objects.order_by("seq")
    assert event.hash == event_hash(event)
    assert event.prev_hash == first.hash
    assert (event.seq, event.type, event.model_id, event.model_name) == (
        2,
        "model_version.created",
        model.pk,
        "m",
    )
    assert event.version == event.after["version"] == version.version == 1
    assert event.after["description"] == event.after["run_link"] == ODD_TEXT
    assert event.after["tags"] == tags
    assert event.created_at >= version.created_at
    assert dict(version.tags.values_list("key", "value")) == tags
    head = EventChainHead.objects.get()
    assert (head.seq, head.hash) == (2, event.hash)
    assert EventOutbox.objects.filter(event=event).count() == 1  # until the commit hands it over


def test_a_version_created_through_a_stale_model_records_the_name_the_model_has_now(actor):
    model = make_model(actor, "m")
    stale = RegisteredModel.objects.get(pk=model.pk)
    services.model_rename(model=model, new_name="m2", actor=actor)

    version = services.version_create(model=stale, source="s3://m/1", actor=actor)

    event = Event.objects.get(type="model_version.created")
    assert (version.model.name, event.model_name, event.after["name"]) == ("m2", "m2", "m2")
    assert event.hash == event_hash(event)
    assert RegisteredModel.objects.get(pk=model.pk).last_version == version.version == 1


def test_a_version_of_a_deleted_model_is_refused_and_writes_nothing(actor):
    model = make_model(actor, "m")
    stale = RegisteredModel.objects.get(pk=model.pk)
    services.model_delete(model=model, actor=actor)
    events = Event.objects.count()

    with pytest.raises(RegisteredModel.DoesNotExist):
        services.version_create(model=stale, source="s3://m/1", actor=actor)

    assert Event.objects.count() == events
    assert ModelVersion.objects.count() == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement creation")
def test_a_version_is_created_in_one_statement(actor):
    model = make_model(actor, "m")

    with CaptureQueriesContext(connection) as queries:
        services.version_create(model=model, source="s3://m/1", tags={"a": "1"}, actor=actor)

    assert len(queries) == 1
    assert ModelVersion.objects.get().tags.get().value == "1"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement creation")
def test_a_creation_that_started_before_the_last_event_does_not_take_an_earlier_time(
    actor, monkeypatch
):
    """A creation that waited for the chain head behind a change that started after it: its
    event takes the time of the event before, so the log's times never go back."""
    model = make_model(actor, "m")
    later = Event.objects.get().created_at
    monkeypatch.setattr(timezone, "now", lambda: later - timedelta(seconds=5))

    version = services.version_create(model=model, source="s3://m/1", actor=actor)

    event = Event.objects.get(type="model_version.created")
    assert version.created_at == later - timedelta(seconds=5)
    assert event.created_at == later
    assert event.hash == event_hash(event)


def test_a_publishing_run_goes_on_after_a_failing_event_and_leaves_it_to_the_sweeper(
    actor, settings
):
    settings.MODELGATE_EVENT_CONSUMERS = [RECORD, FAIL_ON_2]
    model = make_model(actor, "m")
    for _ in range(3):
        make_version(actor, model)

    assert publishing.events_publish() == 3

    # The batch failed at event 2 and was rolled back, then handed over event by event: event 1
    # (and the failing 2) reached the consumer twice, which is why consumers are idempotent.
    assert [seq for seq, _ in consumers.received] == [1, 2, 1, 2, 3, 4]
    outbox = EventOutbox.objects.get()
    assert (outbox.pk, outbox.attempts) == (2, 1)
    # A later run does not retry it (the sweeper does, once it is stale).
    make_version(actor, model)
    assert publishing.events_publish() == 1
    assert [seq for seq, _ in consumers.received] == [1, 2, 1, 2, 3, 4, 5]
    assert list(EventOutbox.objects.values_list("pk", flat=True)) == [2]


def test_a_batch_that_publishes_cleanly_takes_one_savepoint(actor, record_consumer):
    model = make_model(actor, "m")
    for _ in range(4):
        make_version(actor, model)

    with CaptureQueriesContext(connection) as queries:
        assert publishing.events_publish() == 5

    assert [seq for seq, _ in consumers.received] == [1, 2, 3, 4, 5]
    savepoints = [q["sql"] for q in queries if q["sql"].startswith("SAVEPOINT")]
    # The run's transaction (a savepoint within the test's) and the batch's: not one per event.
    assert len(savepoints) == 2
    assert EventOutbox.objects.count() == 0


def test_an_event_appended_while_a_run_works_is_handed_over_by_that_run(
    actor, settings, debounced, django_capture_on_commit_callbacks
):
    settings.MODELGATE_EVENT_CONSUMERS = ["tests.registry.consumers.record_and_append_once"]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        make_model(actor, "m")

    # The run's mark was still set when event 2 was appended: no second run was queued, and the
    # run handed event 2 over after it cleared the mark.
    assert len(callbacks) == 1
    assert consumers.received == [(1, "registered_model.created"), (2, "registered_model.created")]
    assert EventOutbox.objects.count() == 0
    assert EventChainHead.objects.get().publish_queued_at is None


def test_a_publishing_run_works_in_batches_in_seq_order(actor, record_consumer, monkeypatch):
    monkeypatch.setattr(publishing, "PUBLISH_BATCH", 2)
    model = make_model(actor, "m")
    for _ in range(4):
        make_version(actor, model)

    assert publishing.events_publish() == 5

    assert [seq for seq, _ in consumers.received] == [1, 2, 3, 4, 5]
    assert EventOutbox.objects.count() == 0
    assert publishing.events_publish() == 0


def test_a_publishing_run_lingers_while_events_keep_coming(
    actor, record_consumer, debounced, settings, monkeypatch
):
    """Events committed while a run lingers are handed over by that run, in order; once a wait
    brings nothing new it clears the mark and ends."""
    settings.MODELGATE_EVENT_PUBLISH_LINGER_SECONDS = 0.01
    model = make_model(actor, "m")  # seq 1, marks a run as queued
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) <= 2:  # a version appended during each of the first two waits
            make_version(actor, model)

    monkeypatch.setattr(publishing.time, "sleep", sleep)

    assert publishing.events_publish() == 3

    assert waits == [0.01, 0.01, 0.01]  # the third wait brought nothing: the run ended
    assert consumers.received == [
        (1, "registered_model.created"),
        (2, "model_version.created"),
        (3, "model_version.created"),
    ]
    assert EventOutbox.objects.count() == 0
    assert EventChainHead.objects.get().publish_queued_at is None


def test_a_publishing_run_lingers_no_longer_than_its_limit(
    actor, record_consumer, debounced, settings, monkeypatch
):
    settings.MODELGATE_EVENT_PUBLISH_LINGER_SECONDS = 0.01
    monkeypatch.setattr(publishing, "LINGER_LIMIT_SECONDS", 0.2)
    model = make_model(actor, "m")
    clock = itertools.count(start=1000.0, step=0.05)  # every reading 50 ms later
    monkeypatch.setattr(publishing.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(publishing.time, "sleep", lambda seconds: make_version(actor, model))

    published = publishing.events_publish()

    # Readings at 1000.0 (the limit: 1000.2), then 1000.05, 1000.1 and 1000.15 let a wait
    # start (each brings a version, handed over by the pass after it); 1000.2 does not.
    assert published == 1 + 3
    assert Event.objects.count() == 4
    assert EventOutbox.objects.count() == 0
    assert EventChainHead.objects.get().publish_queued_at is None


def test_the_publishing_task_runs_a_publishing_run(actor, record_consumer):
    make_model(actor, "m")

    assert tasks.events_publish.apply().get() == 1

    assert consumers.received == [(1, "registered_model.created")]


def test_nothing_is_handed_over_before_commit(actor, record_consumer):
    make_model(actor, "m")

    assert consumers.received == []
    outbox = EventOutbox.objects.get()
    assert (outbox.event_id, outbox.attempts, outbox.last_error) == (1, 0, "")


def test_with_no_consumers_publishing_just_clears_the_outbox(
    actor, settings, django_capture_on_commit_callbacks
):
    settings.MODELGATE_EVENT_CONSUMERS = []

    with django_capture_on_commit_callbacks(execute=True):
        make_model(actor, "m")

    assert EventOutbox.objects.count() == 0


def test_publishing_an_already_published_event_does_nothing(actor, record_consumer):
    make_model(actor, "m")

    assert publishing.event_publish(seq=1) is True
    assert publishing.event_publish(seq=1) is False

    assert consumers.received == [(1, "registered_model.created")]


def test_a_failing_consumer_leaves_the_outbox_row_with_attempts_and_error(
    actor, settings, django_capture_on_commit_callbacks
):
    settings.MODELGATE_EVENT_CONSUMERS = [RECORD, EXPLODE]

    with django_capture_on_commit_callbacks(execute=True):
        make_model(actor, "m")

    outbox = EventOutbox.objects.get()
    assert outbox.event_id == 1
    assert outbox.attempts == 1
    assert outbox.last_error == "RuntimeError('downstream unavailable for event 1')"
    # Consumers before the failing one did receive it: they must be idempotent.
    assert consumers.received == [(1, "registered_model.created")]

    assert publishing.event_publish(seq=1) is False

    outbox.refresh_from_db()
    assert outbox.attempts == 2
    assert outbox.last_error == "RuntimeError('downstream unavailable for event 1')"


def test_a_consumer_failing_in_the_database_is_counted_like_any_failure(
    actor, settings, django_capture_on_commit_callbacks
):
    settings.MODELGATE_EVENT_CONSUMERS = [DB_ERROR]

    with django_capture_on_commit_callbacks(execute=True):
        make_model(actor, "m")

    outbox = EventOutbox.objects.get()
    assert outbox.attempts == 1
    assert outbox.last_error.startswith("IntegrityError(")
    # The database connection is still usable after the failed consumer.
    make_model(actor, "next")
    assert Event.objects.count() == 2


def test_the_sweeper_goes_on_after_an_event_whose_consumer_fails_in_the_database(actor, settings):
    make_model(actor, "a")
    make_model(actor, "b")
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    settings.MODELGATE_EVENT_CONSUMERS = [DB_ERROR]

    assert publishing.events_republish_stale() == 0

    assert list(EventOutbox.objects.order_by("pk").values_list("pk", "attempts")) == [
        (1, 1),
        (2, 1),
    ]


def test_a_broker_outage_loses_nothing(
    actor, record_consumer, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.events_publish, "delay", broker_down)

    with django_capture_on_commit_callbacks(execute=True):
        make_model(actor, "m")

    assert consumers.received == []
    assert EventOutbox.objects.count() == 1
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(seconds=31))

    assert publishing.events_republish_stale() == 1

    assert consumers.received == [(1, "registered_model.created")]
    assert EventOutbox.objects.count() == 0


def test_the_sweeper_republishes_rows_older_than_the_threshold_only(actor, record_consumer):
    model = make_model(actor, "m")
    make_version(actor, model)
    make_version(actor, model)
    now = timezone.now()
    EventOutbox.objects.filter(pk=1).update(created_at=now - timedelta(seconds=90))
    EventOutbox.objects.filter(pk=2).update(created_at=now - timedelta(seconds=31))
    EventOutbox.objects.filter(pk=3).update(created_at=now - timedelta(seconds=25))

    assert publishing.events_republish_stale() == 2

    assert consumers.received == [(1, "registered_model.created"), (2, "model_version.created")]
    assert list(EventOutbox.objects.values_list("pk", flat=True)) == [3]


def test_the_sweeper_threshold_follows_the_setting_and_the_argument(
    actor, record_consumer, settings
):
    make_model(actor, "m")
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(seconds=10))

    assert publishing.events_republish_stale() == 0
    settings.MODELGATE_EVENT_REPUBLISH_AFTER_SECONDS = 5
    assert publishing.events_republish_stale(older_than=timedelta(seconds=20)) == 0
    assert consumers.received == []

    assert publishing.events_republish_stale() == 1

    assert consumers.received == [(1, "registered_model.created")]
    assert EventOutbox.objects.count() == 0


def test_the_sweeper_works_in_seq_order_up_to_its_limit(actor, record_consumer):
    model = make_model(actor, "m")
    for _ in range(4):
        make_version(actor, model)
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(minutes=1))

    assert publishing.events_republish_stale(limit=3) == 3

    assert [seq for seq, _ in consumers.received] == [1, 2, 3]
    assert list(EventOutbox.objects.order_by("pk").values_list("pk", flat=True)) == [4, 5]


def test_the_sweeper_counts_failures_and_keeps_the_rows(actor, settings):
    settings.MODELGATE_EVENT_CONSUMERS = [EXPLODE]
    make_model(actor, "a")
    make_model(actor, "b")
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(minutes=1))

    assert publishing.events_republish_stale() == 0

    rows = list(EventOutbox.objects.order_by("pk").values_list("pk", "attempts", "last_error"))
    assert rows == [
        (1, 1, "RuntimeError('downstream unavailable for event 1')"),
        (2, 1, "RuntimeError('downstream unavailable for event 2')"),
    ]


def test_the_sweeper_task_runs_the_sweep(actor, record_consumer):
    make_model(actor, "m")
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(minutes=1))

    result = tasks.events_republish_stale.apply()

    assert result.get() == 1
    assert consumers.received == [(1, "registered_model.created")]
    assert EventOutbox.objects.count() == 0
