"""config.sql: the hot paths' queries prepared once per PostgreSQL connection."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from config.sql import prepared_cursor
from tests.factories import make_model

pytestmark = pytest.mark.django_db

COUNT_BY_NAME = "SELECT count(*) FROM registry_registeredmodel WHERE name = %(name)s"


@pytest.fixture
def model(actor):
    return make_model(actor, "fraud-scorer")


def prepared_count(fragment: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{fragment}%"],
        )
        return cursor.fetchone()[0]


def test_a_prepared_cursor_answers_as_a_plain_one(model):
    with prepared_cursor() as cursor:
        cursor.execute(COUNT_BY_NAME, {"name": model.name})
        found = cursor.fetchone()
        cursor.execute(COUNT_BY_NAME, {"name": "no-such-model"})
        missing = cursor.fetchone()

    assert (found, missing) == ((1,), (0,))


@pytest.mark.postgres
def test_on_postgresql_a_statement_is_prepared_once_per_connection(model):
    for name in (model.name, "other", model.name):
        with prepared_cursor() as cursor:
            cursor.execute(COUNT_BY_NAME + " AND 1 = 1", {"name": name})
            assert cursor.fetchone() == ((1,) if name == model.name else (0,))

    assert prepared_count("WHERE name = $1 AND 1 = 1") == 1


@pytest.mark.postgres
def test_while_queries_are_logged_the_cursor_binds_on_the_client(model):
    with CaptureQueriesContext(connection) as queries, prepared_cursor() as cursor:
        cursor.execute(COUNT_BY_NAME + " AND 2 = 2", {"name": model.name})
        assert cursor.fetchone() == (1,)

    # The log shows the statement with its value, and nothing was prepared.
    assert [query["sql"] for query in queries.captured_queries] == [
        "SELECT count(*) FROM registry_registeredmodel WHERE name = 'fraud-scorer' AND 2 = 2"
    ]
    assert prepared_count("AND 2 = 2") == 0


@pytest.mark.postgres
def test_without_a_prepare_threshold_nothing_is_prepared(model, monkeypatch):
    # MODELGATE_DB_PREPARE=0 leaves OPTIONS without one (config/settings.py).
    monkeypatch.delitem(connection.settings_dict["OPTIONS"], "prepare_threshold")

    for _ in range(3):
        with prepared_cursor() as cursor:
            cursor.execute(COUNT_BY_NAME + " AND 3 = 3", {"name": model.name})
            assert cursor.fetchone() == (1,)

    assert prepared_count("AND 3 = 3") == 0


@pytest.mark.postgres
def test_a_failing_prepared_statement_raises_django_s_error_and_leaves_the_connection_usable():
    with pytest.raises(DatabaseError), transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute("SELECT 1 / (%(zero)s::int)", {"zero": 0})

    with prepared_cursor() as cursor:
        cursor.execute("SELECT 1 / (%(one)s::int)", {"one": 1})
        assert cursor.fetchone() == (1,)
