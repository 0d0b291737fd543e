"""Reads of the registry: one place that decides what exists and how it is fetched."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, QuerySet

from config.errors import NotFound
from registry.models import (
    Event,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)


def model_list(*, name_contains: str = "", tag: tuple[str, str | None] | None = None) -> QuerySet:
    """Models with their tags and aliases prefetched, optionally filtered."""
    qs = RegisteredModel.objects.prefetch_related(
        Prefetch("tags", queryset=RegisteredModelTag.objects.order_by("key")),
        Prefetch(
            "aliases", queryset=ModelAlias.objects.select_related("version").order_by("alias")
        ),
    )
    if name_contains:
        qs = qs.filter(name__icontains=name_contains)
    if tag is not None:
        key, value = tag
        tag_qs = RegisteredModelTag.objects.filter(key=key)
        if value is not None:
            tag_qs = tag_qs.filter(value=value)
        qs = qs.filter(pk__in=tag_qs.values("model_id"))
    return qs


def model_get(*, name: str) -> RegisteredModel:
    model = model_list().filter(name=name).first()
    if model is None:
        raise NotFound(f"Registered Model with name={name} not found")
    return model


def version_list(*, model: RegisteredModel | None = None) -> QuerySet:
    """Live versions with model, tags and aliases prefetched, newest first."""
    qs = (
        ModelVersion.objects.live()
        .select_related("model", "created_by")
        .prefetch_related(
            Prefetch("tags", queryset=ModelVersionTag.objects.order_by("key")),
            Prefetch("aliases", queryset=ModelAlias.objects.order_by("alias")),
        )
    )
    if model is not None:
        qs = qs.filter(model=model)
    return qs.order_by("model_id", "-version")


def version_get(*, model: RegisteredModel, version: int) -> ModelVersion:
    found = version_list(model=model).filter(version=version).first()
    if found is None:
        raise NotFound(f"Model Version (name={model.name}, version={version}) not found")
    return found


def alias_list(*, model: RegisteredModel) -> QuerySet:
    return ModelAlias.objects.filter(model=model).select_related("version").order_by("alias")


def alias_get(*, model: RegisteredModel, alias: str) -> ModelAlias:
    found = alias_list(model=model).filter(alias=alias).first()
    if found is None:
        raise NotFound(f"Registered model alias {alias} not found on model {model.name}.")
    return found


def alias_state(*, model_name: str, alias: str) -> tuple[int, datetime, datetime, int] | None:
    """(version pk, version update time, model update time, model id) of an alias, in one query.

    Together they change whenever the alias's answer would: the alias moves (another version),
    the version changes (its update time), or the model is renamed or its aliases change (the
    model's update time). The poll path reads only this to answer 304 Not Modified.
    """
    return (
        ModelVersion.objects.filter(
            aliases__model__name=model_name, aliases__alias=alias, deleted_at__isnull=True
        )
        .values_list("pk", "updated_at", "model__updated_at", "model_id")
        .first()
    )


def event_list(
    *,
    model: str | None = None,
    version: int | None = None,
    types: list[str] | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """History, oldest first; `model` matches the model's events under every name it had."""
    qs = Event.objects.all()
    if model:
        model_id = RegisteredModel.objects.filter(name=model).values_list("pk", flat=True).first()
        qs = qs.filter(model_id=model_id) if model_id is not None else qs.filter(model_name=model)
    if version is not None:
        qs = qs.filter(version=version)
    if types:
        qs = qs.filter(type__in=types)
    if actor:
        qs = qs.filter(actor_name=actor)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs.order_by("seq")
