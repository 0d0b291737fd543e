"""Reading events fast, for the passes over the whole log (verification, exports).

The ORM's per-row conversions (a datetime parsed from the database and formatted again, JSON
decoded by a converter) cost more than the work itself on a million rows. These expressions let
the database hand over the time already in the canonical UTC form and the snapshots as JSON
text, to be embedded as they are (exports) or decoded once (verification).

Each pass works on its rows in chunks, `pipelined`: while a helper thread hashes or renders one
chunk, the thread that owns the connection asks for the next, so the database formats it (the
time, the snapshots' text) on another CPU instead of each side waiting for the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from django.db import connection
from django.db.models import CharField, F, Func, TextField
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast

from registry.events import UTC_TEXT_SQL

A = TypeVar("A")
B = TypeVar("B")


def utc_text(field: str = "created_at") -> Combinable:
    """The timestamp as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (events.event_timestamp) on PostgreSQL;
    elsewhere the field itself, formatted in Python."""
    if connection.vendor == "postgresql":
        return Func(
            F(field), template=UTC_TEXT_SQL.format("%(expressions)s"), output_field=CharField()
        )
    return F(field)


def json_text(field: str) -> Cast:
    """A JSON column as its text (SQL NULL stays None)."""
    return Cast(field, output_field=TextField())


def pipelined(items: Iterable[A], work: Callable[[A], B]) -> Iterator[B]:
    """`work(item)` for each item, in order: each in a thread of its own while this thread reads
    the next item.

    The items are read here, so the database is only ever used by the thread that owns its
    connection (no sharing, no second connection, the same transaction); `work` must not use it.
    At most two items are in hand at once (the one being worked on, the one just read). Closing
    the iterator early (a client that went away, the first bad row) waits for the work under way.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
    try:
        pending: Future[B] | None = None
        for item in items:
            submitted = pool.submit(work, item)
            if pending is not None:
                yield pending.result()
            pending = submitted
        if pending is not None:
            yield pending.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
