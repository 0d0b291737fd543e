"""Raw SQL on the hot paths, planned once per database connection.

PostgreSQL plans every statement it receives. For a query joining a handful of tables the plan
costs more than running it: the permission query every write makes (five branches, eleven
tables) takes about 3 ms to plan and under 1 ms to run. A prepared statement is planned once per
connection and reused by every later execution on it (PostgreSQL switches to a generic plan
after five custom ones when that plan is no worse).

Django binds parameters on the client (its cursors never prepare) and turns psycopg's preparing
off unless OPTIONS name a prepare_threshold, which the settings do on PostgreSQL.
prepared_cursor() is a server-binding cursor that prepares what it runs; Modelgate's own pool
keeps each connection's session (and its prepared statements) for the connection's life. Behind a
pooler that cannot keep them (PgBouncer before 1.21 in transaction mode), MODELGATE_DB_PREPARE=0
leaves the threshold unset and these queries bind on the client like every other. Only for
statements whose parameters bind as plain values (no `IN %s` of a tuple, no identifiers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorWrapper


@contextmanager
def prepared_cursor(using: str = DEFAULT_DB_ALIAS) -> Iterator[CursorWrapper]:
    """A cursor of Django's (execute wrappers and error wrapping apply) whose statements are
    prepared on the connection, on PostgreSQL. Elsewhere, without a prepare_threshold, or while
    queries are logged (DEBUG, tests that count them: the log would not show a prepared
    statement's SQL), a plain cursor."""
    connection = connections[using]
    if (
        connection.vendor != "postgresql"
        or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None
        or connection.queries_logged
    ):
        with connection.cursor() as plain:
            yield plain
        return
    connection.validate_thread_sharing()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = _PreparingCursor(connection.connection)
    with CursorWrapper(raw, connection) as wrapped:
        yield wrapped


class _PreparingCursor(psycopg.Cursor):  # type: ignore[type-arg]
    """psycopg's server-binding cursor, preparing every statement it executes."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        kwargs["prepare"] = True
        return super().execute(query, params, **kwargs)
