"""Exports of the history for auditors: JSON Lines or CSV, streamed, with a manifest.

An export is bounded by the chain head read when it starts (`through`): the log is append-only,
so the rows up to that seq never change and the export is a consistent snapshot without holding
a transaction open while it streams. Rows are fetched in keyset chunks (`seq > last`, a few
thousand at a time), so memory stays flat for any number of rows and the first bytes leave at
once. The same fetch function feeds the sync generator (WSGI, the management command) and the
async one (ASGI: Django buffers a sync iterator whole before sending it under ASGI); in both, a
chunk is rendered in another thread while the next one is fetched, so the database formats the
next rows while Python writes the last ones.

Each row carries every field the hash covers, so a JSON Lines export can be checked offline
(docs/verify_export.py); its last line is `{"_manifest": {...}}` with the row count, first and
last seq, the head it was cut at and the latest signed checkpoint. A CSV export stays a plain
table; its manifest is the same document, asked for with `manifest=1` and the same `through`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache, partial
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import Count, Max, Min, QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone

from accounts.actors import Actor
from config.errors import InvalidParameter
from registry import selectors
from registry.choices import EventType, event_outcome
from registry.events import GENESIS_HASH, event_record, event_timestamp
from registry.history.checkpoints import checkpoint_as_dict, checkpoint_latest
from registry.history.rows import json_text, pipelined, utc_text
from registry.models import Event, EventChainHead, RegisteredModel

FORMATS = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}
CHUNK_SIZE = 2000
MAX_WINDOW_CHUNKS = 512  # the widest seq range one chunk query spans, in chunk sizes
COLUMNS = (
    "seq",
    "time",
    "type",
    "outcome",
    "actor",
    "actor_id",
    "token",
    "source",
    "client_ip",
    "request_id",
    "model",
    "model_id",
    "version",
    "from_stage",
    "to_stage",
    "alias",
    "comment",
    "before",
    "after",
    "prev_hash",
    "hash",
)


def _columns() -> tuple[Any, ...]:
    """What a chunk query selects: the time as text where the database can format it, the
    snapshots as JSON text (embedded as they are, never decoded and encoded again), and the few
    snapshot keys the stage and alias columns are read from."""
    return (
        "seq",
        utc_text(),
        "type",
        "actor_name",
        "actor_id",
        "actor_token",
        "source",
        "client_ip",
        "request_id",
        "model_name",
        "model_id",
        "version",
        "comment",
        KT("before__stage"),
        KT("after__stage"),
        KT("after__alias"),
        KT("before__alias"),
        KT("after__target"),
        KT("after__from_stage"),
        json_text("before"),
        json_text("after"),
        "prev_hash",
        "hash",
    )


# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ALIAS_TARGET_PREFIX = "alias:"  # how transition requests name an alias target
_DERIVED_PREFIXES = ("model_version_alias.", "transition_request.")  # see derived_columns


@dataclass(frozen=True)
class ExportFilters:
    model: str | None = None
    version: int | None = None
    types: tuple[str, ...] = ()
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The filters as given, for the manifest and the export's own event."""
        return {
            "model": self.model,
            "version": self.version,
            "type": list(self.types),
            "actor": self.actor,
            "since": event_timestamp(self.since) if self.since else None,
            "until": event_timestamp(self.until) if self.until else None,
        }


@dataclass
class ExportPlan:
    """One export: what it selects, where the log stood when it began, what it will hold."""

    format: str
    filters: ExportFilters
    queryset: QuerySet = field(repr=False)
    through: int
    head_hash: str
    rows: int
    first_seq: int | None
    last_seq: int | None
    checkpoint: dict[str, Any] | None
    event_seq: int | None = None

    @cached_property
    def chunk_queryset(self) -> QuerySet:
        """The rows in seq order as a chunk query reads them (export_rows narrows it)."""
        return self.queryset.order_by("seq").values_list(*_columns())

    def manifest(
        self, *, rows: int | None = None, first_seq: Any = None, last_seq: Any = None
    ) -> dict[str, Any]:
        """What an auditor needs to check the export offline (see docs/auditing.md)."""
        return {
            "format": self.format,
            "filters": self.filters.as_dict(),
            "rows": self.rows if rows is None else rows,
            "first_seq": self.first_seq if rows is None else first_seq,
            "last_seq": self.last_seq if rows is None else last_seq,
            "head": {"seq": self.through, "hash": self.head_hash},
            "checkpoint": self.checkpoint,
            "export_event_seq": self.event_seq,
            "generated_at": event_timestamp(timezone.now()),
            "canonical_form": "sha256 of the sorted-key compact JSON described in docs/auditing.md",
        }

    def filename(self) -> str:
        return f"modelgate-history-{self.through}.{self.format}"


def export_plan(
    *, viewer: Actor, format: str, filters: ExportFilters, through: int | None = None
) -> ExportPlan:
    """Resolve an export: the viewer's events matching `filters`, up to the chain head now (or
    up to `through`, to reproduce an earlier export or fetch its manifest)."""
    if format not in FORMATS:
        raise InvalidParameter(
            f"format must be one of {', '.join(FORMATS)}, not '{format}'.",
            fields={"format": [f"One of {', '.join(FORMATS)}."]},
        )
    head = EventChainHead.objects.filter(pk=1).values_list("seq", flat=True).first()
    if head is None:
        head = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    if through is not None:
        if through < 0:
            raise InvalidParameter("through must be a sequence number (0 or more).")
        head = min(head, through)
    head_hash = Event.objects.filter(seq=head).values_list("hash", flat=True).first()
    queryset = selectors.event_list(
        viewer=viewer,
        model=filters.model,
        version=filters.version,
        types=list(filters.types) or None,
        actor=filters.actor,
        since=filters.since,
        until=filters.until,
    ).filter(seq__lte=head)
    counts = queryset.aggregate(rows=Count("seq"), first=Min("seq"), last=Max("seq"))
    return ExportPlan(
        format=format,
        filters=filters,
        queryset=queryset,
        through=head,
        head_hash=head_hash or GENESIS_HASH,
        rows=counts["rows"],
        first_seq=counts["first"],
        last_seq=counts["last"],
        checkpoint=checkpoint_as_dict(checkpoint_latest(through=head)),
    )


@transaction.atomic
def export_record(*, plan: ExportPlan, actor: Actor) -> Event:
    """Record that `actor` exported `plan`, before the first row leaves.

    Recorded at the start, not the end: the row count is already exact (the export is bounded
    by the head), and a stream cut short by the client or a crash is still on record; if the
    record cannot be written, no row is sent.
    """
    model = None
    if plan.filters.model:
        model = RegisteredModel.objects.filter(name=plan.filters.model).first()
    event = event_record(
        type=EventType.HISTORY_EXPORTED,
        actor=actor,
        model=model,
        model_name=plan.filters.model or "",
        version=plan.filters.version,
        after={
            "format": plan.format,
            "filters": plan.filters.as_dict(),
            "rows": plan.rows,
            "first_seq": plan.first_seq,
            "last_seq": plan.last_seq,
            "through_seq": plan.through,
        },
    )
    plan.event_seq = event.seq
    return event


def derived_columns(
    type: str,
    before_stage: str | None,
    after_stage: str | None,
    alias: str | None,
    target: str | None,
    from_stage: str | None,
) -> tuple[str, str, str]:
    """(from_stage, to_stage, alias) of an event, from keys of its snapshots."""
    if type == EventType.VERSION_STAGE_TRANSITIONED:
        return before_stage or "", after_stage or "", ""
    if type.startswith(_DERIVED_PREFIXES[0]):
        return "", "", alias or ""
    if type.startswith(_DERIVED_PREFIXES[1]):
        target = target or ""
        if target.startswith(ALIAS_TARGET_PREFIX):
            return "", "", target.removeprefix(ALIAS_TARGET_PREFIX)
        return from_stage or "", target, ""
    return "", "", ""


# Per event type, memoised (a few dozen types; bounded all the same, the log is data).
@lru_cache(maxsize=1024)
def _outcome(type: str) -> str:
    return event_outcome(type).value


@lru_cache(maxsize=1024)
def _has_derived(type: str) -> bool:
    """Whether derived_columns reads anything for this type (else all three are empty)."""
    return type == EventType.VERSION_STAGE_TRANSITIONED or type.startswith(_DERIVED_PREFIXES)


def _table(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Chunk rows as the values of COLUMNS, in that order (before and after as JSON text)."""
    table = []
    for (
        seq,
        time,
        type,
        actor,
        actor_id,
        token,
        source,
        client_ip,
        request_id,
        model,
        model_id,
        version,
        comment,
        before_stage,
        after_stage,
        after_alias,
        before_alias,
        target,
        from_stage,
        before,
        after,
        prev_hash,
        hash,
    ) in rows:
        if _has_derived(type):
            from_stage, to_stage, alias = derived_columns(
                type, before_stage, after_stage, after_alias or before_alias, target, from_stage
            )
        else:
            from_stage = to_stage = alias = ""
        table.append(
            [
                seq,
                time if isinstance(time, str) else event_timestamp(time),
                type,
                _outcome(type),
                actor,
                actor_id,
                token,
                source,
                client_ip,
                request_id,
                model,
                model_id,
                version,
                from_stage,
                to_stage,
                alias,
                comment,
                before,
                after,
                prev_hash,
                hash,
            ]
        )
    return table


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text that would start a formula gets a `'`."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_header() -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(COLUMNS)
    return out.getvalue().encode()


_CSV_NUMBERS = frozenset(COLUMNS.index(name) for name in ("seq", "actor_id", "model_id", "version"))
_FORMULA_START = frozenset(FORMULA_PREFIXES)  # each prefix is one character
_FORMULA_AFTER_COMMA = re.compile(f",[{re.escape(''.join(FORMULA_PREFIXES))}]")
_BEFORE, _AFTER = COLUMNS.index("before"), COLUMNS.index("after")


def csv_field(text: str) -> str:
    """A text cell as csv.writer writes it (QUOTE_MINIMAL): quoted when it holds the delimiter,
    a quote or a line break, its quotes doubled."""
    if '"' in text:
        return '"' + text.replace('"', '""') + '"'
    if "," in text or "\n" in text or "\r" in text:
        return '"' + text + '"'
    return text


def _csv_unquoted(line: str, cells: int) -> bool:
    """Whether `cells` text cells joined by commas into `line` are written as they are: none
    holds a comma, a quote or a line break."""
    return (
        line.count(",") == cells - 1 and '"' not in line and "\n" not in line and "\r" not in line
    )


def _csv_no_formula(line: str) -> bool:
    """Whether no cell of `line` starts as a formula would (each starts the line or follows a
    comma; a comma inside a cell only makes this say no more often)."""
    return line[:1] not in _FORMULA_START and _FORMULA_AFTER_COMMA.search(line) is None


def _csv_snapshot(text: str | None) -> str:
    """A snapshot's JSON text as its cell: csv_field(csv_cell(text)), in one step."""
    if not text:
        return ""
    if text[0] in _FORMULA_START:
        text = "'" + text
    return csv_field(text)


def _csv_row(cells: list[Any]) -> str:
    """A row (COLUMNS' values) as csv.writer writes `[csv_cell(value), …, prev_hash, hash]`.

    The same text, sooner: the cells before the snapshots are joined at once and looked at as
    one line (most need neither a `'` nor quotes), and the snapshots, JSON full of quotes, are
    quoted with str.replace rather than character by character.
    """
    head = cells[:_BEFORE]
    for index in _CSV_NUMBERS:
        value = head[index]
        head[index] = "" if value is None else str(value)
    before, after, *hashes = cells[_BEFORE:]
    try:
        line = ",".join(head)
        if not _csv_no_formula(line):
            head = [
                value if index in _CSV_NUMBERS else csv_cell(value)
                for index, value in enumerate(head)
            ]
            line = ",".join(head)
        if not _csv_unquoted(line, len(head)):
            line = ",".join(map(csv_field, head))
        tail = ",".join(hashes)
        if not _csv_unquoted(tail, len(hashes)):
            tail = ",".join(map(csv_field, hashes))
        before, after = _csv_snapshot(before), _csv_snapshot(after)
    except TypeError:  # a cell that is neither text nor a number: csv.writer's own way
        out = io.StringIO()
        csv.writer(out).writerow([*map(csv_cell, cells[: _AFTER + 1]), *hashes])
        return out.getvalue()
    return f"{line},{before},{after},{tail}\r\n"


def _render_csv(rows: list[tuple[Any, ...]]) -> bytes:
    out = io.StringIO()
    write = out.write
    for cells in _table(rows):
        write(_csv_row(cells))
    return out.getvalue().encode()


def _render_jsonl(rows: list[tuple[Any, ...]]) -> bytes:
    """One object a line: the snapshots embedded as the JSON text the database gave, the rest
    written by orjson (compact, UTF-8, the json module's escapes)."""
    dumps, fragment, newline = orjson.dumps, orjson.Fragment, orjson.OPT_APPEND_NEWLINE
    out = io.BytesIO()  # written line by line: a list of the lines, joined, costs twice as much
    write = out.write
    for cells in _table(rows):
        before, after = cells[_BEFORE], cells[_AFTER]
        cells[_BEFORE] = fragment(before) if before else None
        cells[_AFTER] = fragment(after) if after else None
        write(dumps(dict(zip(COLUMNS, cells, strict=True)), option=newline))
    return out.getvalue()


def render_rows(rows: list[tuple[Any, ...]], format: str) -> bytes:
    """A chunk of rows as export lines. No database access: it runs beside the next fetch."""
    return _render_jsonl(rows) if format == "jsonl" else _render_csv(rows)


@dataclass
class _Cursor:
    """Where a stream is: the last seq covered, and what it sent (for the manifest)."""

    after: int = 0
    window: int = 0  # how many seqs the next query spans (0: the chunk size)
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    done: bool = False


def export_rows(plan: ExportPlan, cursor: _Cursor, size: int = CHUNK_SIZE) -> list[tuple[Any, ...]]:
    """The next rows after `cursor` (at most `size`); marks the cursor done at the end.

    Each query spans a bounded range of seqs (`after < seq <= after + window`), so whatever plan
    the database picks (a bitmap scan and a sort, when its statistics are stale) it never sorts
    more than the window. A window that comes back sparse widens fourfold (a filtered export of a
    few events among millions takes a few queries, not one per chunk); a full one narrows back.
    """
    window = cursor.window or size
    upper = min(cursor.after + window, plan.through)
    rows = list(plan.chunk_queryset.filter(seq__gt=cursor.after, seq__lte=upper)[:size])
    if len(rows) == size:
        cursor.after, cursor.window = rows[-1][0], size
    else:
        cursor.after, cursor.window = upper, min(window * 4, size * MAX_WINDOW_CHUNKS)
    cursor.done = cursor.after >= plan.through
    if rows:
        cursor.rows += len(rows)
        cursor.first_seq = cursor.first_seq or rows[0][0]
        cursor.last_seq = rows[-1][0]
    return rows


def _chunks(plan: ExportPlan, cursor: _Cursor, size: int) -> Iterator[list[tuple[Any, ...]]]:
    while not cursor.done:
        if rows := export_rows(plan, cursor, size):
            yield rows


def _trailer(plan: ExportPlan, cursor: _Cursor) -> bytes:
    if plan.format != "jsonl":
        return b""
    manifest = plan.manifest(rows=cursor.rows, first_seq=cursor.first_seq, last_seq=cursor.last_seq)
    return (json.dumps({"_manifest": manifest}, ensure_ascii=False) + "\n").encode()


def export_stream(plan: ExportPlan, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The export as a sync iterator of byte chunks (WSGI, the management command): each chunk
    rendered in a helper thread while this one fetches the next."""
    cursor = _Cursor()
    if plan.format == "csv":
        yield csv_header()
    render = partial(render_rows, format=plan.format)
    yield from pipelined(_chunks(plan, cursor, chunk_size), render)
    if trailer := _trailer(plan, cursor):
        yield trailer


async def export_stream_async(
    plan: ExportPlan, chunk_size: int = CHUNK_SIZE
) -> AsyncIterator[bytes]:
    """The same as an async iterator (ASGI), so the event loop only passes bytes along.

    Chunks are fetched in the request's thread (thread-sensitive: its connection, and every use
    of that connection in one thread) and rendered in another; the next fetch starts before the
    chunk in hand is rendered, so the database works on it meanwhile.
    """
    fetch = sync_to_async(export_rows)
    render = sync_to_async(render_rows, thread_sensitive=False)
    cursor = _Cursor()
    if plan.format == "csv":
        yield csv_header()
    ahead: asyncio.Future[list[tuple[Any, ...]]] | None = asyncio.ensure_future(
        fetch(plan, cursor, chunk_size)
    )
    try:
        while ahead is not None:
            rows = await ahead
            ahead = None if cursor.done else asyncio.ensure_future(fetch(plan, cursor, chunk_size))
            if rows:
                yield await render(rows, plan.format)
    finally:
        if ahead is not None:  # the client went away: the fetch under way ends on its own
            ahead.cancel()
    if trailer := _trailer(plan, cursor):
        yield trailer
