"""On PostgreSQL the history tables refuse UPDATE, DELETE and TRUNCATE, whoever asks.

The triggers come from django-pgtrigger through the migrations, on PostgreSQL only; on SQLite
the same migrations create nothing (the chain and checkpoints still detect tampering there).
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from registry import services
from registry.history.checkpoints import checkpoint_create
from registry.history.verify import history_verify
from registry.models import Event, EventCheckpoint, EventOutbox
from tests.conftest import history_writable

pytestmark = pytest.mark.django_db

REFUSED = r"is append-only: (UPDATE|DELETE|TRUNCATE) refused"


def refused(call) -> str:
    """Run `call` in a savepoint; return the database's refusal (the test fails without one)."""
    with pytest.raises(DatabaseError, match=REFUSED) as error, transaction.atomic():
        call()
    return str(error.value)


def raw(sql: str):
    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)

    return run


@pytest.fixture
def logged(history):
    """The history, published (no outbox rows protect it at the ORM level), checkpointed."""
    EventOutbox.objects.all().delete()
    checkpoint_create()
    with connection.cursor() as cursor:
        # Fire the deferred foreign-key checks of this test's inserts now, or PostgreSQL
        # refuses a TRUNCATE for them before the trigger under test is reached.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return list(Event.objects.order_by("seq").values_list("seq", "hash"))


@pytest.mark.postgres
def test_orm_update_and_delete_of_events_are_refused(logged):
    event = Event.objects.get(seq=3)
    event.comment = "edited"

    assert "registry_event is append-only: UPDATE refused" in refused(event.save)
    refused(lambda: Event.objects.filter(seq=3).update(comment="edited"))
    refused(lambda: Event.objects.all().update(actor_name="x"))
    refused(lambda: Event.objects.filter(seq=12).delete())
    refused(lambda: Event.objects.get(seq=5).delete())

    assert list(Event.objects.order_by("seq").values_list("seq", "hash")) == logged
    assert history_verify().ok


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE registry_event SET comment = 'edited' WHERE seq = 3",
        "UPDATE registry_event SET seq = seq + 100",
        "DELETE FROM registry_event WHERE seq > 9",
        "DELETE FROM registry_event",
        "TRUNCATE registry_event CASCADE",
        "TRUNCATE registry_event, registry_eventoutbox",
        "UPDATE registry_eventcheckpoint SET seq = 40",
        "DELETE FROM registry_eventcheckpoint",
        "TRUNCATE registry_eventcheckpoint",
    ],
)
def test_raw_sql_edits_are_refused(logged, sql):
    refused(raw(sql))

    assert list(Event.objects.order_by("seq").values_list("seq", "hash")) == logged
    assert EventCheckpoint.objects.count() == 1
    assert history_verify().ok


@pytest.mark.postgres
def test_checkpoints_cannot_be_edited_or_deleted_through_the_orm(logged):
    checkpoint = EventCheckpoint.objects.get()
    checkpoint.seq = 40

    refused(checkpoint.save)
    refused(checkpoint.delete)


@pytest.mark.postgres
def test_appending_still_works(history, actor):
    services.model_tag_set(model=history, key="k", value="v", actor=actor)

    assert Event.objects.count() == 13
    assert history_verify().ok


@pytest.mark.postgres
def test_the_triggers_are_installed_by_the_migrations(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
            "WHERE tgname LIKE 'pgtrigger_append_only%%' ORDER BY 1, 2"
        )
        triggers = cursor.fetchall()

    assert [(table, name.rsplit("_", 1)[0]) for table, name in triggers] == [
        ("registry_event", "pgtrigger_append_only"),
        ("registry_event", "pgtrigger_append_only_truncate"),
        ("registry_eventcheckpoint", "pgtrigger_append_only"),
        ("registry_eventcheckpoint", "pgtrigger_append_only_truncate"),
    ]


@pytest.mark.postgres
def test_the_test_suites_bypass_is_scoped_to_its_block(logged):
    with history_writable():
        Event.objects.filter(seq=3).update(comment="edited")

    refused(lambda: Event.objects.filter(seq=4).update(comment="edited"))
    assert Event.objects.get(seq=3).comment == "edited"


def test_no_triggers_on_sqlite(db):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert cursor.fetchall() == []
