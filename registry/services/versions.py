"""Writes on model versions: creation, edits, stage transitions, soft deletion, tags."""

from datetime import datetime
from functools import cache
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.actors import Actor
from config.errors import InvalidParameter, NotFound
from config.sql import prepared_cursor
from registry.choices import EventType, Stage
from registry.events import event_record, version_snapshot
from registry.guards import GuardedWrite, alias_target, guards_check
from registry.inserts import insert
from registry.models import ModelAlias, ModelVersion, ModelVersionTag, RegisteredModel
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
    model = _model_take_number(model, now)
    version = ModelVersion(
        model=model,
        version=model.last_version,
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


def _model_take_number(model: RegisteredModel, now: datetime) -> RegisteredModel:
    """Lock the model row and take its next version number; the model as it is now.

    model_lock and the counter's update; on PostgreSQL one statement (the UPDATE takes the row
    lock, and a concurrent one waits for it and then counts on from the committed number).
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        model = model_lock(model)
        model.last_version += 1
        model.updated_at = now
        model.save(update_fields=["last_version", "updated_at"])
        return model
    names, sql = _take_number_sql()
    with prepared_cursor(connection.alias) as cursor:
        cursor.execute(sql, [now, model.pk])
        row = cursor.fetchone()
    if row is None:
        raise RegisteredModel.DoesNotExist(f"Registered model {model.pk} does not exist.")
    return RegisteredModel.from_db(connection.alias, names, row)


@cache
def _take_number_sql() -> tuple[list[str], str]:
    from django.db import connection

    quote = connection.ops.quote_name
    meta = RegisteredModel._meta
    fields = meta.concrete_fields
    columns = {field.name: quote(field.column) for field in fields}
    last, updated = columns["last_version"], columns["updated_at"]
    returning = ", ".join(columns.values())
    # Identifiers quoted from the model's metadata, every value a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {last} = {last} + 1, {updated} = %s "  # noqa: S608
        f"WHERE {quote(meta.pk.column)} = %s RETURNING {returning}"
    )
    return [field.attname for field in fields], sql


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
