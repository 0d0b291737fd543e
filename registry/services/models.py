"""Writes on registered models and their tags."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.actors import Actor
from config.errors import AlreadyExists
from registry.choices import EventType
from registry.events import event_record, model_snapshot
from registry.models import RegisteredModel, RegisteredModelTag
from registry.permissions import require_create_models
from registry.services.permissions import creator_grant
from registry.validation import validate_model_name, validate_tag, validate_tags


def model_lock(model: RegisteredModel) -> RegisteredModel:
    """Re-read the model under its row lock: every write to a model and its children starts here.

    Locking the model row first, then versions, then the event chain head, is the one lock order
    of the registry, so concurrent writers queue instead of deadlocking.
    """
    return RegisteredModel.objects.select_for_update().get(id=model.id)


def _name_taken(name: str, *, exclude_pk: int | None = None) -> bool:
    taken = RegisteredModel.objects.filter(name=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    return taken.exists()


@transaction.atomic
def model_create(
    *,
    name: str,
    actor: Actor,
    description: str = "",
    tags: object = None,
    deployment_job_id: str = "",
    deployment_job_state: str = "",
) -> RegisteredModel:
    """Register a new model name; its creator gets the configured level on it."""
    require_create_models(actor)
    name = validate_model_name(name)
    tag_values = validate_tags(tags)
    if _name_taken(name):
        raise AlreadyExists(f"Registered Model (name={name}) already exists.")
    now = timezone.now()
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.create(
                name=name,
                description=description or "",
                deployment_job_id=deployment_job_id or "",
                deployment_job_state=deployment_job_state or "",
                created_by=actor.user,
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:
        raise AlreadyExists(f"Registered Model (name={name}) already exists.") from None
    RegisteredModelTag.objects.bulk_create(
        RegisteredModelTag(model=model, key=key, value=value) for key, value in tag_values.items()
    )
    creator_grant(model=model, actor=actor)
    event_record(
        type=EventType.MODEL_CREATED, actor=actor, model=model, after=model_snapshot(model)
    )
    return model


@transaction.atomic
def model_update(
    *,
    model: RegisteredModel,
    actor: Actor,
    description: str | None,
    deployment_job_id: str | None = None,
    deployment_job_state: str | None = None,
) -> RegisteredModel:
    """Change a model's description and MLflow 3 deployment-job link; None leaves a field."""
    model = model_lock(model)
    before = model_snapshot(model)
    if description is not None:
        model.description = description
    if deployment_job_id is not None:
        model.deployment_job_id = deployment_job_id
    if deployment_job_state is not None:
        model.deployment_job_state = deployment_job_state
    model.updated_at = timezone.now()
    model.save(
        update_fields=[
            "description",
            "deployment_job_id",
            "deployment_job_state",
            "updated_at",
        ]
    )
    event_record(
        type=EventType.MODEL_UPDATED,
        actor=actor,
        model=model,
        before=before,
        after=model_snapshot(model),
    )
    return model


@transaction.atomic
def model_rename(*, model: RegisteredModel, actor: Actor, new_name: str) -> RegisteredModel:
    """Rename a model; its id, versions, aliases, grants and history stay with it."""
    new_name = validate_model_name(new_name, field="new_name")
    model = model_lock(model)
    if new_name == model.name:
        return model
    if _name_taken(new_name, exclude_pk=model.pk):
        raise AlreadyExists(f"Registered Model (name={new_name}) already exists.")
    before = model_snapshot(model)
    model.name = new_name
    model.updated_at = timezone.now()
    try:
        with transaction.atomic():
            model.save(update_fields=["name", "updated_at"])
    except IntegrityError:
        raise AlreadyExists(f"Registered Model (name={new_name}) already exists.") from None
    event_record(
        type=EventType.MODEL_RENAMED,
        actor=actor,
        model=model,
        before=before,
        after=model_snapshot(model),
    )
    return model


@transaction.atomic
def model_delete(*, model: RegisteredModel, actor: Actor) -> None:
    """Delete a model with its versions, tags and aliases; its history stays."""
    model = model_lock(model)
    before = model_snapshot(model)
    before["versions"] = model.versions.live().count()
    event_record(type=EventType.MODEL_DELETED, actor=actor, model=model, before=before)
    model.delete()


@transaction.atomic
def model_tag_set(
    *, model: RegisteredModel, actor: Actor, key: str, value: str
) -> RegisteredModelTag:
    """Set (add or overwrite) one tag of a model."""
    key, value = validate_tag(key, value)
    model = model_lock(model)
    old = model.tags.filter(key=key).first()
    tag, _ = RegisteredModelTag.objects.update_or_create(
        model=model, key=key, defaults={"value": value}
    )
    model.updated_at = timezone.now()
    model.save(update_fields=["updated_at"])
    event_record(
        type=EventType.MODEL_TAG_SET,
        actor=actor,
        model=model,
        before={"key": key, "value": old.value} if old else None,
        after={"key": key, "value": value},
    )
    return tag


@transaction.atomic
def model_tag_delete(*, model: RegisteredModel, actor: Actor, key: str) -> bool:
    """Remove one tag of a model; returns False (and records nothing) when it was not there."""
    model = model_lock(model)
    tag = model.tags.filter(key=key).first()
    if tag is None:
        return False
    tag.delete()
    model.updated_at = timezone.now()
    model.save(update_fields=["updated_at"])
    event_record(
        type=EventType.MODEL_TAG_DELETED,
        actor=actor,
        model=model,
        before={"key": key, "value": tag.value},
    )
    return True
