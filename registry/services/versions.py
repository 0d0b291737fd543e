"""Writes on model versions: creation, edits, stage transitions, soft deletion, tags."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any

from django.db import transaction
from django.db.models import Field
from django.utils import timezone

from accounts.actors import Actor
from config.errors import InvalidParameter, NotFound
from config.sql import prepared_cursor
from registry.choices import EventType, Stage
from registry.events import chain_head, chain_head_lock_sql, event_record, version_snapshot
from registry.guards import GuardedWrite, alias_target, guards_check
from registry.inserts import insert
from registry.models import (
    EventChainHead,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
)
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


@transaction.atomic
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
    model, head = _numbered_insert(version, now)
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
        head=head,
        commit=True,  # nothing follows: the append ends the transaction (when outermost)
    )
    return version


def _numbered_insert(
    version: ModelVersion, now: datetime
) -> tuple[RegisteredModel, EventChainHead | None]:
    """Lock the version's model, take its next version number and insert `version` with it;
    the model as it is now, and the event chain's head if this locked it too.

    On PostgreSQL one statement: the counter's UPDATE takes the model's row lock (a concurrent
    one waits for it and then counts on from the committed number), the INSERT takes the number
    it returns, and the head's row lock comes last, once the version is in (the one lock order:
    model, version, head). Elsewhere model_lock, the counter's update and the INSERT; the event
    locks the head.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        model = model_lock(version.model)
        model.last_version += 1
        model.updated_at = now
        model.save(update_fields=["last_version", "updated_at"])
        version.model, version.version = model, model.last_version
        insert(connection, version)
        return model, None
    names, sql, fields = _numbered_insert_sql()
    params = [field.get_db_prep_save(field.pre_save(version, True), connection) for field in fields]
    with prepared_cursor(connection.alias) as cursor:
        cursor.execute(sql, [now, version.model_id, *params])
        row = cursor.fetchone()
    if row is None:
        raise RegisteredModel.DoesNotExist(f"Registered model {version.model_id} does not exist.")
    model = RegisteredModel.from_db(connection.alias, names, row[: len(names)])
    version_pk, seq, hash_, publish_queued_at = row[len(names) :]
    version.model, version.version, version.pk = model, model.last_version, version_pk
    version._state.adding = False
    version._state.db = connection.alias
    # No head row (a flushed table): the event recreates it.
    head = None if seq is None else chain_head(seq, hash_, publish_queued_at)
    return model, head


@cache
def _numbered_insert_sql() -> tuple[list[str], str, tuple[Field[Any, Any], ...]]:
    """_numbered_insert's statement (PostgreSQL): it returns the model's columns as the UPDATE
    left them, the new version's id and the chain head's seq, hash and publish mark (NULLs
    without a head row); the version fields whose values are parameters come with it."""
    from django.db import connection

    quote = connection.ops.quote_name
    model_meta, version_meta = RegisteredModel._meta, ModelVersion._meta
    model_fields = model_meta.concrete_fields
    last = quote(model_meta.get_field("last_version").column)
    updated = quote(model_meta.get_field("updated_at").column)
    returned = ", ".join(f"taken.{quote(field.column)}" for field in model_fields)
    inserted = [f for f in version_meta.local_concrete_fields if f is not version_meta.auto_field]
    numbered = {
        "model": f"taken.{quote(model_meta.pk.column)}",
        "version": f"taken.{last}",
    }
    # A parameter in a SELECT list has no column type to take: cast each to its column's type,
    # without a length (an explicit cast to varchar(n) would cut a longer value short; the
    # column's own assignment still refuses it).
    values = ", ".join(
        numbered.get(field.name)
        or f"CAST(%s AS {re.sub(r'[(].*[)]', '', field.db_type(connection) or '')})"
        for field in inserted
    )
    columns = ", ".join(quote(field.column) for field in inserted)
    version_pk = quote(version_meta.pk.column)
    # The head's read is gated on the inserted row: PostgreSQL evaluates that uncorrelated
    # EXISTS once, before it scans the head, and to answer it runs the INSERT and so the UPDATE.
    # The model's row lock is therefore always taken before the head's, never the other way.
    head = chain_head_lock_sql("EXISTS (SELECT FROM added)")
    # Identifiers quoted from the models' metadata, every value a parameter.
    sql = (
        f"WITH taken AS (UPDATE {quote(model_meta.db_table)} "  # noqa: S608
        f"SET {last} = {last} + 1, {updated} = %s WHERE {quote(model_meta.pk.column)} = %s "
        f"RETURNING *), "
        f"added AS (INSERT INTO {quote(version_meta.db_table)} ({columns}) "
        f"SELECT {values} FROM taken RETURNING {version_pk}), "
        f"head AS ({head}) "
        f"SELECT {returned}, added.{version_pk}, head.* FROM taken CROSS JOIN added "
        f"LEFT JOIN head ON true"
    )
    parameters = tuple(field for field in inserted if field.name not in numbered)
    return [field.attname for field in model_fields], sql, parameters


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
