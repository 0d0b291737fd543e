"""Writes on model versions: creation, edits, stage transitions, soft deletion, tags."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Field, Model
from django.utils import timezone

from accounts.actors import Actor
from config.errors import InvalidParameter, NotFound
from config.sql import prepared_cursor
from registry.choices import EventType, Stage
from registry.events import (
    chain_head_lock_sql,
    event_draft,
    event_hash_sql,
    event_mark,
    event_record,
    version_snapshot,
)
from registry.guards import GuardedWrite, alias_target, guards_check
from registry.inserts import insert, insert_select_sql, prepared_values
from registry.models import (
    Event,
    EventChainHead,
    EventOutbox,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
)
from registry.publishing import events_publish_on_commit
from registry.refusals import Refusal, refusal_noted, refusals_recorded
from registry.services.models import model_lock
from registry.validation import validate_run_id, validate_source, validate_tag, validate_tags

ARCHIVING_TARGETS = (Stage.STAGING, Stage.PRODUCTION)


def version_lock(version: ModelVersion) -> ModelVersion:
    """Re-read a live version under its row lock (after its model's); NotFound if deleted."""
    locked = (
        ModelVersion.objects.select_for_update(of=("self",))
        .select_related("model")
        .filter(pk=version.pk, deleted_at__isnull=True)
        .first()
    )
    if locked is None:
        raise NotFound(
            f"Model Version (name={version.model.name}, version={version.version}) not found"
        )
    return locked


def version_create(
    *,
    model: RegisteredModel,
    actor: Actor,
    source: str,
    run_id: str | None = "",
    run_link: str | None = "",
    description: str | None = "",
    tags: object = None,
    mlflow_model_id: str | None = "",
    params: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    storage_location: str | None = "",
) -> ModelVersion:
    """Add the next numbered version to a model; numbers are never reused."""
    source = validate_source(source)
    run_id = validate_run_id(run_id)
    tag_values = validate_tags(tags)
    now = timezone.now()
    version = ModelVersion(
        model=model,
        source=source,
        storage_location=storage_location or "",
        run_id=run_id,
        run_link=run_link or "",
        description=description or "",
        mlflow_model_id=mlflow_model_id or "",
        params=params or [],
        metrics=metrics or [],
        created_by=actor.user,
        created_at=now,
        updated_at=now,
    )
    if transaction.get_connection().vendor == "postgresql" and _created_at_once(
        version, tag_values, actor, now
    ):
        return version
    return _created_in_steps(version, tag_values, actor, now)


@transaction.atomic
def _created_in_steps(
    version: ModelVersion, tag_values: dict[str, str], actor: Actor, now: datetime
) -> ModelVersion:
    """version_create as a service writes: the model's lock and counter, the version and its
    tags, then the event."""
    model = model_lock(version.model)
    model.last_version += 1
    model.updated_at = now
    model.save(update_fields=["last_version", "updated_at"])
    version.model, version.version = model, model.last_version
    insert(transaction.get_connection(), version)
    ModelVersionTag.objects.bulk_create(
        ModelVersionTag(version=version, key=key, value=value) for key, value in tag_values.items()
    )
    event_record(
        type=EventType.VERSION_CREATED,
        actor=actor,
        model=model,
        version=version.version,
        # A new version has exactly the tags just written and no alias yet.
        after=version_snapshot(version, tags=dict(tag_values), aliases=[]),
    )
    return version


# The chain values _created_at_once's statement fills in, by their SQL (see its `chain` step).
_CHAIN_VALUES = {
    "seq": "chain.seq",
    "prev_hash": "chain.prev_hash",
    "created_at": "chain.at",
    "version": "chain.version",
}


def _created_at_once(
    version: ModelVersion, tag_values: dict[str, str], actor: Actor, now: datetime
) -> bool:
    """version_create in one statement (PostgreSQL): the model's counter, the version, its
    tags and its event with the new chain head, the event's hash computed by the database from
    the canonical text made here. Outside a transaction the statement is one of its own: the
    chain head's lock, which every write waits for, is then held from the moment the statement
    takes it to its commit, with no round trip to this process in between.

    The event's time is the version's, or the previous event's where that is later (a creation
    that waited for the head behind one that started after it): the log's times never go back.

    False, having written nothing, when the model is not the one `version.model` stands for
    (renamed or deleted since it was read) or the chain head's row is missing: the steps then
    find out what is there and do what the service would.
    """
    connection = transaction.get_connection()
    model = version.model
    after = version_snapshot(version, tags=dict(tag_values), aliases=[])
    after["version"] = event_mark("version")
    event = event_draft(
        type=EventType.VERSION_CREATED,
        actor=actor,
        model=model,
        version=event_mark("version"),
        after=after,
    )
    event.seq, event.prev_hash = event_mark("seq"), event_mark("prev_hash")
    event.created_at = event_mark("created_at")
    hashed = event_hash_sql(event, _CHAIN_VALUES)
    if hashed is None:
        return False
    hash_sql, pieces = hashed
    statement = _at_once_sql(hash_sql)
    params = [
        now,
        model.pk,
        model.name,
        *prepared_values(connection, version, statement.version_fields),
        list(tag_values),
        list(tag_values.values()),
        *pieces,
        Event._meta.get_field("after").get_db_prep_save(after, connection),
        settings.MODELGATE_EVENT_PUBLISH_PENDING_SECONDS,
        now,
        *prepared_values(connection, event, statement.event_fields),
        *prepared_values(connection, EventOutbox(), statement.outbox_fields),
    ]
    with prepared_cursor(connection.alias) as cursor:
        cursor.execute(statement.sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    names = statement.model_names
    model = RegisteredModel.from_db(connection.alias, names, row[: len(names)])
    version_pk, due = row[len(names) :]
    version.model, version.version, version.pk = model, model.last_version, version_pk
    version._state.adding = False
    version._state.db = connection.alias
    if due:  # one publishing task per burst of events (registry/publishing.py)
        events_publish_on_commit()
    return True


class _AtOnce(NamedTuple):
    """_created_at_once's statement and what its parameters come from."""

    model_names: list[str]  # attribute names of the model's columns, returned first
    sql: str
    version_fields: tuple[Field[Any, Any], ...]  # fields whose values are parameters
    event_fields: tuple[Field[Any, Any], ...]
    outbox_fields: tuple[Field[Any, Any], ...]


def _column(model: type[Model], name: str) -> str:
    """The quoted column of one of `model`'s concrete fields."""
    field = model._meta.get_field(name)
    if not isinstance(field, Field):
        raise TypeError(f"{model._meta.label}.{name} has no column")
    return transaction.get_connection().ops.quote_name(field.column)


@cache
def _at_once_sql(hash_sql: str) -> _AtOnce:
    """_created_at_once's statement for the event hash `hash_sql`: it returns the model's
    columns, the version's id and whether to queue publishing.

    The head's lock comes last: its read is gated on the inserted version, and PostgreSQL
    evaluates that uncorrelated EXISTS once, before it scans the head, running the INSERT and so
    the counter's UPDATE to answer it (the one lock order: model, version, head). A concurrent
    creation waits for the model's lock and counts on from the committed number; an append
    waiting for the head's lock reads the head as its holder committed it.
    """
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    model_table, model_pk = quote(RegisteredModel._meta.db_table), _column(RegisteredModel, "id")
    head_table, head_pk = quote(EventChainHead._meta.db_table), _column(EventChainHead, "id")
    last, updated, name = (
        _column(RegisteredModel, field) for field in ("last_version", "updated_at", "name")
    )
    head_seq, head_hash, head_queued = (
        _column(EventChainHead, field) for field in ("seq", "hash", "publish_queued_at")
    )
    event_table = quote(Event._meta.db_table)
    event_seq, event_at = _column(Event, "seq"), _column(Event, "created_at")
    model_fields = RegisteredModel._meta.concrete_fields
    # The model's columns in its fields' order (the table's may differ).
    returned = ", ".join(f"taken.{quote(field.column)}" for field in model_fields)
    version_pk = _column(ModelVersion, "id")
    version_insert, version_fields = insert_select_sql(
        connection,
        ModelVersion,
        {"model": f"taken.{model_pk}", "version": f"taken.{last}"},
        source="taken",
        returning=version_pk,
    )
    tag_columns = ", ".join(
        _column(ModelVersionTag, field) for field in ("version", "key", "value")
    )
    event_insert, event_fields = insert_select_sql(
        connection,
        Event,
        {
            "seq": "stamped.seq",
            "created_at": "stamped.at",
            "model_id": f"taken.{model_pk}",
            "model_name": f"taken.{name}",
            "version": "stamped.version",
            "after": "stamped.event_after",
            "prev_hash": "stamped.prev_hash",
            "hash": "stamped.event_hash",
        },
        source="stamped CROSS JOIN taken",
        returning=f"{event_seq}, {event_at}",
    )
    # No appended event leaves the outbox row's event NULL, which its column refuses: the
    # statement fails whole rather than commit a version without its event.
    outbox_insert, outbox_fields = insert_select_sql(
        connection,
        EventOutbox,
        {"event": f"appended.{event_seq}", "created_at": f"appended.{event_at}"},
        source="added LEFT JOIN appended ON true",
    )
    # Identifiers quoted from the models' metadata, every value a parameter.
    sql = (
        f"WITH taken AS (UPDATE {model_table} SET {last} = {last} + 1, {updated} = %s "  # noqa: S608
        f"WHERE {model_pk} = %s AND {name} = %s "
        f"AND EXISTS (SELECT FROM {head_table} WHERE {head_pk} = 1) RETURNING *), "
        f"added AS ({version_insert}), "
        f"tagged AS (INSERT INTO {quote(ModelVersionTag._meta.db_table)} ({tag_columns}) "
        f"SELECT added.{version_pk}, tag.key, tag.value FROM added "
        f"CROSS JOIN unnest(CAST(%s AS text[]), CAST(%s AS text[])) AS tag(key, value)), "
        f"head AS ({chain_head_lock_sql('EXISTS (SELECT FROM added)')}), "
        # The values only the head's lock gives, then the hash and the snapshot made with them.
        f"stamped AS (SELECT chain.*, {hash_sql} AS event_hash, "
        f"jsonb_set(CAST(%s AS jsonb), '{{version}}', to_jsonb(chain.version)) AS event_after, "
        # publishing.publish_due's rule, decided under the head's lock as event_record does.
        f"(chain.queued_at IS NULL OR chain.queued_at <= chain.at - make_interval(secs => %s)) "
        f"AS due FROM (SELECT head.{head_seq} + 1 AS seq, head.{head_hash} AS prev_hash, "
        f"GREATEST(CAST(%s AS timestamptz), (SELECT {event_at} FROM {event_table} "
        f"WHERE {event_seq} = head.{head_seq})) AS at, "
        f"taken.{last} AS version, head.{head_queued} AS queued_at "
        f"FROM head CROSS JOIN taken) AS chain), "
        f"appended AS ({event_insert}), "
        f"queued AS ({outbox_insert}), "
        f"moved AS (UPDATE {head_table} SET {head_seq} = stamped.seq, "
        f"{head_hash} = stamped.event_hash, {head_queued} = CASE WHEN stamped.due "
        f"THEN stamped.at ELSE stamped.queued_at END "
        f"FROM stamped WHERE {head_table}.{head_pk} = 1) "
        f"SELECT {returned}, added.{version_pk}, stamped.due "
        f"FROM taken CROSS JOIN added CROSS JOIN stamped"
    )
    return _AtOnce(
        [field.attname for field in model_fields], sql, version_fields, event_fields, outbox_fields
    )


def _touch(version: ModelVersion, now: Any = None) -> None:
    """Bump the version's and its model's update time (the alias ETag follows it)."""
    now = now or timezone.now()
    version.updated_at = now
    version.save(update_fields=["updated_at"])
    RegisteredModel.objects.filter(pk=version.model_id).update(updated_at=now)


@transaction.atomic
def version_update(*, version: ModelVersion, actor: Actor, description: str) -> ModelVersion:
    """Change a version's description."""
    model_lock(version.model)
    version = version_lock(version)
    before = version_snapshot(version)
    version.description = description or ""
    version.save(update_fields=["description"])
    _touch(version)
    event_record(
        type=EventType.VERSION_UPDATED,
        actor=actor,
        model=version.model,
        version=version.version,
        before=before,
        after=version_snapshot(version),
    )
    return version


@refusals_recorded
@transaction.atomic
def version_transition(
    *,
    version: ModelVersion,
    stage: Stage,
    actor: Actor,
    archive_existing: bool = False,
    comment: str = "",
    approval: int | None = None,
) -> ModelVersion:
    """Move a version to `stage`, optionally archiving the versions already there.

    Everything happens in one transaction, so a reader never sees two versions in the target
    stage, nor none, partway through. A stage guarded by a policy is reached only by applying
    an approved request (`approval`); the guards in MODELGATE_WRITE_GUARDS decide, and a direct
    transition they refuse is recorded as refused.
    """
    stage = Stage(stage)
    if archive_existing and stage not in ARCHIVING_TARGETS:
        raise InvalidParameter(
            f"archive_existing_versions is only allowed when moving to Staging or Production, "
            f"not to {stage.value}.",
            fields={"archive_existing_versions": ["Only for Staging or Production."]},
        )
    model = model_lock(version.model)
    version = version_lock(version)
    with refusal_noted(
        lambda: Refusal(
            type=EventType.VERSION_STAGE_TRANSITION_REFUSED,
            actor=actor,
            model=model,
            version=version.version,
            before=version_snapshot(version),
            after={"stage": stage.value, "archive_existing_versions": archive_existing},
            comment=comment,
        )
    ):
        guards_check(
            GuardedWrite(
                model=model, target=stage.value, version=version, actor=actor, approval=approval
            )
        )
    now = timezone.now()
    archived_because = f"Archived because version {version.version} moved to {stage.value}."
    if approval is not None and comment:  # applying a request: its note names the approvers
        archived_because = f"{archived_because} {comment}"
    if archive_existing:
        others = (
            ModelVersion.objects.live()
            .select_for_update(of=("self",))
            .select_related("model")
            .filter(model_id=version.model_id, stage=stage)
            .exclude(pk=version.pk)
            .order_by("version")
        )
        for other in others:
            other_before = version_snapshot(other)
            other.stage = Stage.ARCHIVED
            other.save(update_fields=["stage"])
            _touch(other, now)
            event_record(
                type=EventType.VERSION_STAGE_TRANSITIONED,
                actor=actor,
                model=other.model,
                version=other.version,
                before=other_before,
                after=version_snapshot(other),
                comment=archived_because,
            )
    before = version_snapshot(version)
    version.stage = stage
    version.save(update_fields=["stage"])
    _touch(version, now)
    event_record(
        type=EventType.VERSION_STAGE_TRANSITIONED,
        actor=actor,
        model=version.model,
        version=version.version,
        before=before,
        after=version_snapshot(version),
        comment=comment,
    )
    return version


@refusals_recorded
@transaction.atomic
def version_delete(*, version: ModelVersion, actor: Actor) -> None:
    """Soft-delete a version: it disappears from reads, its aliases go, its number stays used."""
    model_lock(version.model)
    version = version_lock(version)
    before = version_snapshot(version)
    aliases = list(ModelAlias.objects.filter(version=version).order_by("alias"))
    refused = Refusal(
        type=EventType.VERSION_DELETE_REFUSED,
        actor=actor,
        model=version.model,
        version=version.version,
        before=before,
    )
    for alias in aliases:  # a protected alias is not removed behind its policy's back
        with refusal_noted(lambda: refused):
            guards_check(
                GuardedWrite(
                    model=version.model,
                    target=alias_target(alias.alias),
                    version=None,
                    actor=actor,
                )
            )
    for alias in aliases:
        event_record(
            type=EventType.ALIAS_DELETED,
            actor=actor,
            model=version.model,
            version=version.version,
            before={"alias": alias.alias, "version": version.version},
            comment=f"Removed with version {version.version}.",
        )
        alias.delete()
    now = timezone.now()
    version.deleted_at = now
    version.save(update_fields=["deleted_at"])
    _touch(version, now)
    event_record(
        type=EventType.VERSION_DELETED,
        actor=actor,
        model=version.model,
        version=version.version,
        before=before,
    )


@transaction.atomic
def version_tag_set(
    *, version: ModelVersion, actor: Actor, key: str, value: str
) -> ModelVersionTag:
    """Set (add or overwrite) one tag of a version."""
    key, value = validate_tag(key, value)
    model_lock(version.model)
    version = version_lock(version)
    old = version.tags.filter(key=key).first()
    tag, _ = ModelVersionTag.objects.update_or_create(
        version=version, key=key, defaults={"value": value}
    )
    _touch(version)
    event_record(
        type=EventType.VERSION_TAG_SET,
        actor=actor,
        model=version.model,
        version=version.version,
        before={"key": key, "value": old.value} if old else None,
        after={"key": key, "value": value},
    )
    return tag


@transaction.atomic
def version_tag_delete(*, version: ModelVersion, actor: Actor, key: str) -> bool:
    """Remove one tag of a version; returns False (and records nothing) when it was not there."""
    model_lock(version.model)
    version = version_lock(version)
    tag = version.tags.filter(key=key).first()
    if tag is None:
        return False
    tag.delete()
    _touch(version)
    event_record(
        type=EventType.VERSION_TAG_DELETED,
        actor=actor,
        model=version.model,
        version=version.version,
        before={"key": key, "value": tag.value},
    )
    return True
