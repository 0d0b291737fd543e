"""Writes on aliases: set (move, optionally compare-and-set) and delete."""

from django.db import transaction
from django.utils import timezone

from accounts.actors import Actor
from config.errors import Conflict, NotFound
from registry.choices import EventType
from registry.events import event_record
from registry.guards import GuardedWrite, alias_target, guards_check
from registry.models import ModelAlias, ModelVersion, RegisteredModel
from registry.refusals import Refusal, refusal_noted, refusals_recorded
from registry.services.models import model_lock
from registry.validation import validate_alias


@refusals_recorded
@transaction.atomic
def alias_set(
    *,
    model: RegisteredModel,
    alias: str,
    version: int,
    actor: Actor,
    expected_version: int | None = None,
    approval: int | None = None,
    comment: str = "",
) -> ModelAlias:
    """Point `alias` at a version of the model, creating or moving it.

    With `expected_version`, the move happens only if the alias points at that version now;
    otherwise Conflict. Writers of one model queue on its row lock, so the last to commit wins
    and nobody sees an error from a concurrent move. A protected alias moves only by applying an
    approved request (`approval`); a direct move its policy refuses is recorded as refused.
    """
    alias = validate_alias(alias)
    model = model_lock(model)
    target = ModelVersion.objects.live().filter(model=model, version=version).first()
    if target is None:
        raise NotFound(f"Model Version (name={model.name}, version={version}) not found")
    current = ModelAlias.objects.select_related("version").filter(model=model, alias=alias).first()
    current_version = current.version.version if current else None
    with refusal_noted(
        lambda: Refusal(
            type=EventType.ALIAS_SET_REFUSED,
            actor=actor,
            model=model,
            version=version,
            before={"alias": alias, "version": current_version} if current_version else None,
            after={"alias": alias, "version": version},
            comment=comment,
        )
    ):
        guards_check(
            GuardedWrite(
                model=model,
                target=alias_target(alias),
                version=target,
                actor=actor,
                approval=approval,
            )
        )
    if expected_version is not None and current_version != expected_version:
        where = f"version {current_version}" if current_version else "no version"
        raise Conflict(
            f"Alias '{alias}' of model '{model.name}' points at {where}, "
            f"not version {expected_version}; nothing was changed.",
            fields={"expected_version": [f"The alias points at {where}."]},
        )
    now = timezone.now()
    if current is None:
        current = ModelAlias.objects.create(
            model=model, alias=alias, version=target, updated_at=now
        )
    else:
        current.version = target
        current.updated_at = now
        current.save(update_fields=["version", "updated_at"])
    RegisteredModel.objects.filter(pk=model.pk).update(updated_at=now)
    event_record(
        type=EventType.ALIAS_SET,
        actor=actor,
        model=model,
        version=target.version,
        before={"alias": alias, "version": current_version} if current_version else None,
        after={"alias": alias, "version": target.version},
        comment=comment,
    )
    return current


@refusals_recorded
@transaction.atomic
def alias_delete(*, model: RegisteredModel, alias: str, actor: Actor) -> bool:
    """Remove an alias; returns False (and records nothing) when it did not exist."""
    model = model_lock(model)
    current = ModelAlias.objects.select_related("version").filter(model=model, alias=alias).first()
    if current is None:
        return False
    version = current.version.version
    with refusal_noted(
        lambda: Refusal(
            type=EventType.ALIAS_DELETE_REFUSED,
            actor=actor,
            model=model,
            version=version,
            before={"alias": alias, "version": version},
            after={"alias": alias},
        )
    ):
        guards_check(
            GuardedWrite(model=model, target=alias_target(alias), version=None, actor=actor)
        )
    current.delete()
    RegisteredModel.objects.filter(pk=model.pk).update(updated_at=timezone.now())
    event_record(
        type=EventType.ALIAS_DELETED,
        actor=actor,
        model=model,
        version=version,
        before={"alias": alias, "version": version},
    )
    return True
