"""Recording events: snapshots of objects as plain dicts, and the hash-chained append."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from accounts.actors import Actor
from config.sql import prepared_cursor
from registry.inserts import insert_sql
from registry.models import (
    Event,
    EventChainHead,
    EventOutbox,
    ModelVersion,
    RegisteredModel,
)
from registry.publishing import events_publish_on_commit, publish_due

GENESIS_HASH = "0" * 64
# A timestamp `{}` in event_timestamp's form (PostgreSQL): the canonical time, written by the
# database.
UTC_TEXT_SQL = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def model_snapshot(model: RegisteredModel) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "name": model.name,
        "description": model.description,
        "tags": {tag.key: tag.value for tag in model.tags.all()},
    }
    # MLflow 3 deployment-job link: only when set, so snapshots of other models keep their shape.
    if model.deployment_job_id:
        snapshot["deployment_job_id"] = model.deployment_job_id
    if model.deployment_job_state:
        snapshot["deployment_job_state"] = model.deployment_job_state
    return snapshot


def version_snapshot(
    version: ModelVersion,
    *,
    tags: dict[str, str] | None = None,
    aliases: list[str] | None = None,
) -> dict[str, Any]:
    """The version as a plain dict; `tags` and `aliases`, when the caller knows them (a version
    it has just created), spare the two queries that read them."""
    if tags is None:
        tags = {tag.key: tag.value for tag in version.tags.all()}
    if aliases is None:
        aliases = [alias.alias for alias in version.aliases.all()]
    return {
        "name": version.model.name,
        "version": version.version,
        "stage": version.stage,
        "source": version.source,
        "run_id": version.run_id,
        "run_link": version.run_link,
        "description": version.description,
        "status": version.status,
        "tags": tags,
        "aliases": sorted(aliases),
        "deleted": version.deleted_at is not None,
    }


def _timestamp(value: Any) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


event_timestamp = _timestamp

# json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False), without building
# an encoder per call (verify_history hashes every row of the log).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

# The recorded fields, in the order canonical_row() takes them (and verify_history reads them).
CANONICAL_FIELDS = (
    "seq",
    "type",
    "created_at",
    "actor_id",
    "actor_name",
    "actor_token",
    "source",
    "client_ip",
    "request_id",
    "model_id",
    "model_name",
    "version",
    "before",
    "after",
    "comment",
    "prev_hash",
)


def canonical_body(row: Sequence[Any]) -> dict[str, Any]:
    """The document the hash covers, from the values of CANONICAL_FIELDS in that order."""
    (
        seq,
        type,
        created_at,
        actor_id,
        actor_name,
        actor_token,
        source,
        client_ip,
        request_id,
        model_id,
        model_name,
        version,
        before,
        after,
        comment,
        prev_hash,
    ) = row
    return {
        "seq": seq,
        "type": type,
        "created_at": created_at if isinstance(created_at, str) else _timestamp(created_at),
        "actor": {
            "id": actor_id,
            "name": actor_name,
            "token": actor_token,
            "source": source,
            "client_ip": client_ip,
        },
        "request_id": request_id,
        "model": {"id": model_id, "name": model_name},
        "version": version,
        "before": before,
        "after": after,
        "comment": comment,
        "prev_hash": prev_hash,
    }


def canonical_row(row: Sequence[Any]) -> bytes:
    """The bytes the hash covers, from the values of CANONICAL_FIELDS in that order.

    A sorted-key compact JSON of every recorded field. Only plain JSON types go in (strings,
    integers, null, lists, dicts), so the form is the same whichever database stored the row and
    whichever code version reads it. docs/auditing.md describes it for offline verifiers.
    """
    return _CANONICAL_JSON.encode(canonical_body(row)).encode()


def canonical_row_fast(row: Sequence[Any]) -> bytes:
    """canonical_row's bytes written by orjson, about four times faster: for the values the log
    holds, byte for byte alike (sorted keys, compact, UTF-8, the same escapes). Where they could
    differ (floats in exponent form) the bytes hash to something else, so a caller that finds no
    match must decide with canonical_row; orjson refuses integers beyond 64 bits (TypeError).
    """
    return orjson.dumps(canonical_body(row), option=orjson.OPT_SORT_KEYS)


def event_canonical(event: Event) -> bytes:
    """The bytes an event's hash covers (see canonical_row)."""
    return canonical_row([getattr(event, name) for name in CANONICAL_FIELDS])


def event_hash(event: Event) -> str:
    return hashlib.sha256(event_canonical(event)).hexdigest()


def _chain_head_locked(connection: BaseDatabaseWrapper) -> EventChainHead:
    """The chain head under its row lock, recreated from the last event if the row is missing.

    A migration creates the row; it can only be missing after a table flush (transactional
    tests) or a manual deletion, and the chain then continues from the last event.
    """
    if connection.vendor == "postgresql":
        # The ORM's query for this, compiled on every append, costs more than the round trip.
        with prepared_cursor(connection.alias) as cursor:
            cursor.execute(_head_sql(connection.vendor)[0] + " FOR UPDATE")
            row = cursor.fetchone()
        if row is not None:
            seq, hash_, queued_at = row
            return EventChainHead(pk=1, seq=seq, hash=hash_, publish_queued_at=queued_at)
    head = EventChainHead.objects.select_for_update().filter(pk=1).first()
    if head is not None:
        return head
    last = Event.objects.order_by("-seq").first()
    try:
        with transaction.atomic():
            EventChainHead.objects.create(
                pk=1,
                seq=last.seq if last else 0,
                hash=last.hash if last else GENESIS_HASH,
            )
    except IntegrityError:
        pass  # another writer recreated it first
    return EventChainHead.objects.select_for_update().get(pk=1)


@cache
def _head_sql(vendor: str) -> tuple[str, str]:
    """The head's read and its update (identifiers quoted, every value a parameter)."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    head = EventChainHead._meta
    table, pk, seq, hash_, queued = (
        quote(name)
        for name in (
            head.db_table,
            head.pk.column,
            head.get_field("seq").column,
            head.get_field("hash").column,
            head.get_field("publish_queued_at").column,
        )
    )
    # Its WHERE clause open: callers add " FOR UPDATE", or a condition of theirs first.
    select = f"SELECT {seq}, {hash_}, {queued} FROM {table} WHERE {pk} = 1"  # noqa: S608
    update = f"UPDATE {table} SET {seq} = %s, {hash_} = %s, {queued} = %s WHERE {pk} = 1"  # noqa: S608
    return select, update


def chain_head_lock_sql(condition: str) -> str:
    """The head's locking read (its seq, hash and publish mark, in that order) for a service to
    nest in one of its statements: the row is locked only where `condition` holds, which is how
    the statement makes sure it locks its own rows first (see versions._created_at_once)."""
    return f"{_head_sql(connections[DEFAULT_DB_ALIAS].vendor)[0]} AND ({condition}) FOR UPDATE"


def chain_head_seq() -> int:
    """The last committed sequence number (0 for an empty log)."""
    seq = EventChainHead.objects.filter(pk=1).values_list("seq", flat=True).first()
    return seq or 0


def event_draft(
    *,
    type: str,
    actor: Actor,
    model: RegisteredModel | None = None,
    model_name: str | None = None,
    version: int | str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str = "",
) -> Event:
    """An event with everything but its place in the chain (seq, prev_hash, hash) and its time,
    which are set under the head's lock."""
    return Event(
        type=str(type),
        actor_id=actor.user_id,
        actor_name=actor.name,
        actor_token=actor.token_prefix,
        source=actor.source,
        request_id=actor.request_id,
        client_ip=actor.client_ip,
        model_id=model.pk if model is not None else None,
        model_name=model_name if model_name is not None else (model.name if model else ""),
        version=version,
        before=before,
        after=after,
        comment=comment,
    )


def event_record(
    *,
    type: str,
    actor: Actor,
    model: RegisteredModel | None = None,
    model_name: str | None = None,
    version: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str = "",
) -> Event:
    """Append one event to the chain; must run inside the transaction that made the change.

    The chain head's row lock is taken last in every service (after the rows being changed), so
    appends are serialised in commit order without lock-order inversions.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("event_record must be called inside the change's transaction")
    event = event_draft(
        type=type,
        actor=actor,
        model=model,
        model_name=model_name,
        version=version,
        before=before,
        after=after,
        comment=comment,
    )
    head = _chain_head_locked(connection)
    now = timezone.now()
    event.seq, event.created_at, event.prev_hash = head.seq + 1, now, head.hash
    event.hash = event_hash(event)
    # One publishing task per burst of events (registry/publishing.py).
    queue = publish_due(head.publish_queued_at, now)
    _append(
        connection,
        event,
        EventOutbox(event=event, created_at=now),
        queued_at=now if queue else head.publish_queued_at,
    )
    if queue:
        events_publish_on_commit()
    return event


# Filling in an event's chain values inside the statement that appends it (PostgreSQL): the
# statement computes the hash from the canonical text around them. A mark stands in for each
# value while the text is made; it is random per process, so no recorded value can forge one.
_MARK = secrets.token_hex(16)
_MARKED = re.compile(f'"{_MARK}:([a-z_]+)"')
# How the canonical text writes each filled value, from its SQL expression.
_FILLED_TEXT = {
    "seq": "CAST({} AS text)",
    "version": "CAST({} AS text)",
    "prev_hash": "'\"' || {} || '\"'",
    "created_at": "'\"' || " + UTC_TEXT_SQL + " || '\"'",
}


def event_mark(name: str) -> str:
    """The stand-in for the chain value `name` ("seq", "prev_hash", "created_at", "version")
    in an event draft whose hash a statement computes (event_hash_sql)."""
    return f"{_MARK}:{name}"


def event_hash_sql(event: Event, values: dict[str, str]) -> tuple[str, list[str]] | None:
    """SQL computing the hash of `event`, whose fields named in `values` hold their marks (the
    version's also inside `after`, where the event has one): `values` maps each to the SQL
    expression the statement fills it with. The SQL and its parameters, the canonical text's
    pieces around the marks; None if the text does not cut cleanly (a mark of another name).

    The result equals event_hash() of the stored row: the pieces are canonical_row's own text,
    and PostgreSQL writes the filled values as it does (integers in decimal, the hash as a JSON
    string, the time as event_timestamp formats it).
    """
    text = event_canonical(event).decode()
    cut = _MARKED.split(text)
    pieces, names = cut[0::2], cut[1::2]
    if any(name not in values for name in names) or any(_MARK in piece for piece in pieces):
        return None
    parts = ["CAST(%s AS text)"]
    for name in names:
        parts += [f"({_FILLED_TEXT[name].format(values[name])})", "CAST(%s AS text)"]
    return f"encode(sha256(convert_to({' || '.join(parts)}, 'UTF8')), 'hex')", pieces


def _append(
    connection: BaseDatabaseWrapper,
    event: Event,
    outbox: EventOutbox,
    *,
    queued_at: datetime | None,
) -> None:
    """Write the event, its outbox row and the new chain head (with its publishing mark).

    Every append waits for the head's row lock, held until the writer commits, so each round
    trip made under it delays every other writer. On PostgreSQL the three writes are one
    statement (the outbox's foreign key is checked at commit); elsewhere (SQLite, one writer at a
    time anyway) they are the plain ORM writes.
    """
    if connection.vendor != "postgresql":
        event.save(force_insert=True)
        outbox.save(force_insert=True)
        EventChainHead.objects.filter(pk=1).update(
            seq=event.seq, hash=event.hash, publish_queued_at=queued_at
        )
        return
    event_sql, event_params = insert_sql(connection, event)
    outbox_sql, outbox_params = insert_sql(connection, outbox)
    head_update = _head_sql(connection.vendor)[1]
    sql = f"WITH appended AS ({event_sql}), queued AS ({outbox_sql}) {head_update}"
    params = [*event_params, *outbox_params, event.seq, event.hash, queued_at]
    with prepared_cursor(connection.alias) as cursor:
        cursor.execute(sql, params)
    event._state.adding = outbox._state.adding = False
    event._state.db = outbox._state.db = connection.alias
