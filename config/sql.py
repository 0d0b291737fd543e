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


class CompiledQuery:
    """A queryset built and compiled once, run with new values for its named parameters.

    For the hottest reads (the alias poll, answered hundreds of times a second; the user behind
    a password): building and compiling the queryset costs the ORM several times what running
    the query costs the database. The SQL, its parameter positions and its converters
    (SQLite's datetimes) come from Django's own compiler, once per process; each run executes
    that SQL on the calling thread's connection (prepared, on PostgreSQL) and converts the row as
    QuerySet.first() would.
    """

    def __init__(self, build: Any, **placeholders: str) -> None:
        self._build = build  # (**placeholders) -> values_list queryset, ordered, sliced to 1
        self._placeholders = placeholders
        self._compiled: tuple[str, list[Any], dict[str, int], Any, dict] | None = None

    def _compile(self) -> tuple[str, list[Any], dict[str, int], Any, dict]:
        if self._compiled is None:
            compiler = self._build(**self._placeholders).query.get_compiler(DEFAULT_DB_ALIAS)
            sql, params = compiler.as_sql()
            positions = {name: params.index(value) for name, value in self._placeholders.items()}
            columns = [select[0] for select in compiler.select[: compiler.col_count]]
            converters = compiler.get_converters(columns)
            self._compiled = (sql, list(params), positions, compiler, converters)
        return self._compiled

    def run(self, **values: str) -> tuple[Any, ...] | None:
        sql, params, positions, compiler, converters = self._compile()
        params = list(params)
        for name, value in values.items():
            params[positions[name]] = value
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if converters:
            row = next(iter(compiler.apply_converters([row], converters)))
        return tuple(row)
