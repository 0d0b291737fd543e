"""Reads of the registry: one place that decides what exists and how it is fetched."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Prefetch, QuerySet

from accounts.actors import Actor
from config.errors import NotFound
from config.sql import CompiledQuery
from registry.models import (
    Event,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelGroupGrant,
    RegisteredModelTag,
    RegisteredModelUserGrant,
)
from registry.permissions import (
    LEVEL_CODENAMES,
    Level,
    require_level,
    sees_every_model,
    visible_models,
)


def model_list(
    *, actor: Actor, name_contains: str = "", tag: tuple[str, str | None] | None = None
) -> QuerySet:
    """The models the actor may see, with tags and aliases prefetched, optionally filtered."""
    qs = visible_models(actor, RegisteredModel.objects.all()).prefetch_related(
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


def model_get(*, actor: Actor, name: str, level: Level = Level.CAN_READ) -> RegisteredModel:
    """The named model, if the actor may do something needing `level` on it.

    NotFound when it does not exist or the actor may not see it (the same answer, so names do
    not leak); PermissionDenied when the actor sees it but lacks the level.
    """
    model = (
        RegisteredModel.objects.prefetch_related(
            Prefetch("tags", queryset=RegisteredModelTag.objects.order_by("key")),
            Prefetch(
                "aliases", queryset=ModelAlias.objects.select_related("version").order_by("alias")
            ),
        )
        .filter(name=name)
        .first()
    )
    if model is None:
        raise NotFound(f"Registered Model with name={name} not found")
    require_level(actor, model, level)
    return model


def model_get_by_id(*, actor: Actor, pk: int, level: Level = Level.CAN_READ) -> RegisteredModel:
    """As model_get, by the model's id (the Databricks routes name models by id)."""
    model = RegisteredModel.objects.filter(pk=pk).first()
    if model is None:
        raise NotFound(f"Registered Model with id={pk} not found")
    require_level(actor, model, level)
    return model


def version_list(*, actor: Actor, model: RegisteredModel | None = None) -> QuerySet:
    """Live versions of the models the actor may see (or of one model), newest first."""
    qs = (
        ModelVersion.objects.live()
        .select_related("model", "created_by")
        .prefetch_related(
            Prefetch("tags", queryset=ModelVersionTag.objects.order_by("key")),
            Prefetch("aliases", queryset=ModelAlias.objects.order_by("alias")),
        )
    )
    if model is not None:
        require_level(actor, model, Level.CAN_READ)
        qs = qs.filter(model=model)
    else:
        qs = qs.filter(model__in=visible_models(actor, RegisteredModel.objects.all()))
    return qs.order_by("model_id", "-version")


def version_get(*, actor: Actor, model: RegisteredModel, version: int) -> ModelVersion:
    found = version_list(actor=actor, model=model).filter(version=version).first()
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


def alias_state(
    *, actor: Actor, model_name: str, alias: str
) -> tuple[int, datetime, datetime, int] | None:
    """(version pk, version update time, model update time, model id) of an alias, in one query.

    Together they change whenever the alias's answer would: the alias moves (another version),
    the version changes (its update time), or the model is renamed or its aliases change (the
    model's update time). The poll path reads only this to answer 304 Not Modified. None when
    the model has no such alias; NotFound when the actor may not see the model.
    """
    state = _ALIAS_STATE.run(model_name=model_name, alias=alias)
    if state is None:
        model_get(actor=actor, name=model_name)  # NotFound for a model it may not see
        return None
    require_level(actor, RegisteredModel(pk=state[3], name=model_name), Level.CAN_READ)
    return state


def model_state(*, name: str) -> tuple[int, datetime] | None:
    """(id, update time) of the named model, in one indexed query compiled once; no permission
    check. Every change to a model, its versions, their tags or its aliases moves its update
    time, so the MLflow reads key the answers they keep on it."""
    state = _MODEL_STATE.run(name=name)
    return None if state is None else (state[0], state[1])


_MODEL_STATE = CompiledQuery(
    lambda name: (
        RegisteredModel.objects.filter(name=name).values_list("pk", "updated_at").order_by("pk")[:1]
    ),
    name="\x00model name\x00",
)
_ALIAS_STATE = CompiledQuery(
    lambda model_name, alias: (
        ModelVersion.objects.filter(
            aliases__model__name=model_name, aliases__alias=alias, deleted_at__isnull=True
        )
        .values_list("pk", "updated_at", "model__updated_at", "model_id")
        .order_by("pk")[:1]
    ),
    model_name="\x00model name\x00",
    alias="\x00alias\x00",
)


def event_list(
    *,
    viewer: Actor,
    model: str | None = None,
    version: int | None = None,
    types: list[str] | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """The history the viewer may see, oldest first.

    `model` matches the model's events under every name it had. A viewer without a registry-wide
    read grant sees the events of the models it may see now.
    """
    qs = Event.objects.all()
    if not sees_every_model(viewer):
        visible = visible_models(viewer, RegisteredModel.objects.all())
        qs = qs.filter(model_id__in=visible.values("pk"))
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


ROOT_OBJECT = "/registered-models/"


def permissions_acl(*, model: RegisteredModel) -> list[dict[str, Any]]:
    """Who may do what on a model, in the Databricks ACL shape.

    Each entry names a user or a group with `all_permissions`: its direct grant on the model
    (`inherited: false`) and registry-wide grants and superuser status (`inherited: true`, from
    the root object). The caller must have been checked for CAN_MANAGE.
    """
    entries: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def add(kind: str, name: str, level: str, inherited: bool) -> None:
        permission: dict[str, Any] = {"permission_level": level, "inherited": inherited}
        if inherited:
            permission["inherited_from_object"] = [ROOT_OBJECT]
        entries.setdefault((kind, name), []).append(permission)

    for name, codename in RegisteredModelUserGrant.objects.filter(content_object=model).values_list(
        "user__username", "permission__codename"
    ):
        add("user_name", name, codename.upper(), False)
    for name, codename in RegisteredModelGroupGrant.objects.filter(
        content_object=model
    ).values_list("group__name", "permission__codename"):
        add("group_name", name, codename.upper(), False)
    registry_wide = Permission.objects.filter(
        content_type__app_label="registry", codename__in=LEVEL_CODENAMES
    )
    for name, codename in registry_wide.filter(user__isnull=False).values_list(
        "user__username", "codename"
    ):
        add("user_name", name, codename.upper(), True)
    for name, codename in registry_wide.filter(group__isnull=False).values_list(
        "group__name", "codename"
    ):
        add("group_name", name, codename.upper(), True)
    for name in (
        get_user_model()
        .objects.filter(is_superuser=True, is_active=True)
        .values_list("username", flat=True)
    ):
        add("user_name", name, Level.CAN_MANAGE.name, True)
    acl = []
    for (kind, name), permissions in sorted(entries.items()):
        entry: dict[str, Any] = {kind: name, "all_permissions": permissions}
        if kind == "user_name":
            entry["display_name"] = name
        acl.append(entry)
    return acl
