"""Permission levels on registered models: who may see and do what.

Five levels, as Databricks has them, each including the ones before:

    CAN_READ < CAN_EDIT < CAN_MANAGE_STAGING_VERSIONS < CAN_MANAGE_PRODUCTION_VERSIONS < CAN_MANAGE

A grant gives one level to a user or a group, on one model (a django-guardian row in the
model's direct foreign-key tables) or registry-wide (the same codename as a global Django
permission). A user's level on a model is the highest of their own grants, their groups' grants
and the registry-wide grants; superusers have CAN_MANAGE everywhere. An API token may narrow that
further: a read-only token never exceeds CAN_READ, and a token limited to some models sees only
those. Every selector that hands out a model asks this module first, so no door can forget.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet

from config.errors import NotFound, PermissionDenied
from config.localcache import LocalCache
from config.sql import prepared_cursor

if TYPE_CHECKING:
    from accounts.actors import Actor
    from registry.models import RegisteredModel


class Level(IntEnum):
    NONE = 0
    CAN_READ = 1
    CAN_EDIT = 2
    CAN_MANAGE_STAGING_VERSIONS = 3
    CAN_MANAGE_PRODUCTION_VERSIONS = 4
    CAN_MANAGE = 5

    @property
    def codename(self) -> str:
        return self.name.lower()

    @classmethod
    def from_codename(cls, codename: str) -> Level:
        return cls[codename.upper()]

    @classmethod
    def parse(cls, value: object) -> Level:
        """A level from its API name (`CAN_EDIT`); ValueError for anything else."""
        try:
            level = cls[str(value).strip().upper()]
        except KeyError:
            raise ValueError(value) from None
        if level is cls.NONE:
            raise ValueError(value)
        return level


GRANTABLE = [level for level in Level if level is not Level.NONE]
LEVEL_CODENAMES = [level.codename for level in GRANTABLE]
LEVEL_DESCRIPTIONS = {
    Level.CAN_READ: "See the model, its versions, aliases and history; request transitions; "
    "comment.",
    Level.CAN_EDIT: "Also create versions, edit descriptions and tags, set unprotected aliases.",
    Level.CAN_MANAGE_STAGING_VERSIONS: "Also transition, approve and reject among None, "
    "Staging and Archived.",
    Level.CAN_MANAGE_PRODUCTION_VERSIONS: "Also transition, approve and reject to and from "
    "Production.",
    Level.CAN_MANAGE: "Also rename, delete, change permissions and webhooks of the model, and "
    "cancel others' requests.",
}
CREATE_MODELS_CODENAME = "add_registeredmodel"


def _grant_models() -> tuple[Any, Any]:
    from registry.models import RegisteredModelGroupGrant, RegisteredModelUserGrant

    return RegisteredModelUserGrant, RegisteredModelGroupGrant


def _codename_level(codenames: Any) -> Level:
    return max((Level.from_codename(c) for c in codenames), default=Level.NONE)


def _is_anonymous(actor: Actor) -> bool:
    return actor.user is None and not actor.is_system


def registry_level(actor: Actor) -> Level:
    """The actor's registry-wide level, before any token narrowing (cached on the actor)."""
    cached = actor.cache.get("registry_level")
    if cached is not None:
        return cached
    user = actor.user
    if actor.is_system or (user is not None and user.is_active and user.is_superuser):
        level = Level.CAN_MANAGE
    elif user is None:
        level = Level.CAN_READ if settings.MODELGATE_ANONYMOUS_READ else Level.NONE
    elif not user.is_active:
        level = Level.NONE
    elif actor.recent_permissions and (recent := recent_registry_levels.get(user.pk)) is not None:
        level = recent
    else:
        level = _codename_level(
            Permission.objects.filter(
                Q(user=user) | Q(group__user=user),
                content_type__app_label="registry",
                codename__in=LEVEL_CODENAMES,
            ).values_list("codename", flat=True)
        )
        if actor.recent_permissions:
            recent_registry_levels.put(user.pk, level)
    actor.cache["registry_level"] = level
    return level


def _token_model_ids(actor: Actor) -> set[int]:
    """The models a token is limited to (empty: not limited); cached on the actor."""
    if actor.token is None:
        return set()
    allowed = actor.cache.get("token_model_ids")
    if allowed is None and actor.recent_permissions:
        allowed = recent_token_models.get(actor.token.pk)
    if allowed is None:
        allowed = set(actor.token.models.values_list("pk", flat=True))
        if actor.recent_permissions:
            recent_token_models.put(actor.token.pk, allowed)
    actor.cache["token_model_ids"] = allowed
    return allowed


# Levels computed in the last few seconds, for actors that accept them (the poll path): per
# user, token and model, each user's registry-wide level, each user's grants on models, and
# the models each token is limited to.
recent_levels: LocalCache[Level] = LocalCache(50_000, ttl=lambda: settings.MODELGATE_POLL_AUTH_TTL)
recent_registry_levels: LocalCache[Level] = LocalCache(
    10_000, ttl=lambda: settings.MODELGATE_POLL_AUTH_TTL
)
recent_user_grants: LocalCache[dict[int, Level]] = LocalCache(
    1_000, ttl=lambda: settings.MODELGATE_POLL_AUTH_TTL
)
recent_token_models: LocalCache[set[int]] = LocalCache(
    10_000, ttl=lambda: settings.MODELGATE_POLL_AUTH_TTL
)


def model_level(actor: Actor, model: RegisteredModel) -> Level:
    """The actor's effective level on one model (NONE when it may not even see it).

    An actor made with `recent_permissions` may get a level computed up to
    MODELGATE_POLL_AUTH_TTL seconds ago for the same user, token and model.
    """
    if not actor.recent_permissions:
        return _model_level(actor, model)
    level = recent_level(actor, model.pk)
    if level is None:
        level = _model_level(actor, model)
        recent_levels.put(_recent_key(actor, model.pk), level)
    return level


def recent_level(actor: Actor, model_id: int) -> Level | None:
    """The actor's level on a model as model_level would give it to an actor with
    `recent_permissions`, from what was read in the last MODELGATE_POLL_AUTH_TTL seconds only:
    the level computed for this user, token and model, else one made the way _model_level
    makes it from the user's remembered registry-wide level and grants (and the token's
    models). None when something it needs is not remembered. Never queries (the poll path's
    answers from memory)."""
    level = recent_levels.get(_recent_key(actor, model_id))
    if level is not None:
        return level
    user = actor.user
    if user is None or actor.is_system:
        return None
    if actor.token is not None:
        limited = recent_token_models.get(actor.token.pk)
        if limited is None:
            return None
        if limited and model_id not in limited:
            return Level.NONE
    if user.is_active and user.is_superuser:
        level = Level.CAN_MANAGE
    elif not user.is_active:
        level = Level.NONE
    else:
        level = recent_registry_levels.get(user.pk)
        if level is None:
            return None
        if level < Level.CAN_MANAGE:
            grants = recent_user_grants.get(user.pk)
            if grants is None or _TOO_MANY in grants:
                return None
            level = max(level, grants.get(model_id, Level.NONE))
    if actor.token is not None and actor.token.read_only:
        level = min(level, Level.CAN_READ)
    return level


def _recent_key(actor: Actor, model_id: int) -> tuple[int | None, int | None, int]:
    return actor.user_id, actor.token.pk if actor.token else None, model_id


def _model_level(actor: Actor, model: RegisteredModel) -> Level:
    """The actor's effective level on one model (NONE when it may not even see it).

    One query at most: the user's and their groups' grants on the model, and the registry-wide
    grants, in a single UNION; none for superusers and the system.
    """
    limited = _token_model_ids(actor)
    if limited and model.pk not in limited:
        return Level.NONE
    level = registry_level(actor)
    user = actor.user
    if level < Level.CAN_MANAGE and user is not None and user.is_active:
        grants = _recent_grants(user) if actor.recent_permissions else None
        if grants is not None:
            level = max(level, grants.get(model.pk, Level.NONE))
        else:
            user_grants, group_grants = _grant_models()
            own = user_grants.objects.filter(user=user, content_object=model).values_list(
                "permission__codename", flat=True
            )
            groups = group_grants.objects.filter(
                group__user=user, content_object=model
            ).values_list("permission__codename", flat=True)
            level = max(level, _codename_level(own.union(groups, all=True)))
    if actor.token is not None and actor.token.read_only:
        level = min(level, Level.CAN_READ)
    return level


# Past this many grants a user's grants are not kept whole: each model's level is read alone.
RECENT_GRANTS_MAX = 5_000


def _recent_grants(user: Any) -> dict[int, Level] | None:
    """The user's own and their groups' grants, model id → level, read at most
    MODELGATE_POLL_AUTH_TTL seconds ago (for actors that accept recent levels): a bot polling
    many models costs one query per TTL, not one per model. None for a user with more than
    RECENT_GRANTS_MAX grants."""
    grants = recent_user_grants.get(user.pk)
    if grants is None:
        user_grants, group_grants = _grant_models()
        own = user_grants.objects.filter(user=user, permission__codename__in=LEVEL_CODENAMES)
        groups = group_grants.objects.filter(
            group__user=user, permission__codename__in=LEVEL_CODENAMES
        )
        fields = ("content_object_id", "permission__codename")
        rows = list(
            own.values_list(*fields).union(groups.values_list(*fields), all=True)[
                : RECENT_GRANTS_MAX + 1
            ]
        )
        grants = {}
        for model_id, codename in rows:
            grants[model_id] = max(grants.get(model_id, Level.NONE), Level.from_codename(codename))
        if len(rows) > RECENT_GRANTS_MAX:
            grants = {_TOO_MANY: Level.NONE}
        recent_user_grants.put(user.pk, grants)
    return None if _TOO_MANY in grants else grants


_TOO_MANY = -1  # no model has this id


def sees_every_model(actor: Actor) -> bool:
    """A registry-wide reader not narrowed by a token: lists need no per-model filter."""
    return registry_level(actor) >= Level.CAN_READ and not _token_model_ids(actor)


def require_auditor(actor: Actor, what: str = "This") -> None:
    """Registry-wide history (verification) is for registry-wide readers: a CAN_READ grant on
    every model (no write right needed) or a superuser, not narrowed by a token."""
    if not sees_every_model(actor):
        raise PermissionDenied(
            f"{what} needs a registry-wide CAN_READ grant (the auditor's permission)."
        )


def visible_models(actor: Actor, queryset: QuerySet) -> QuerySet:
    """Narrow a RegisteredModel queryset to the models the actor may see."""
    if registry_level(actor) < Level.CAN_READ:
        user = actor.user
        if user is None or not user.is_active:
            return queryset.none()
        user_grants, group_grants = _grant_models()
        queryset = queryset.filter(
            Q(pk__in=user_grants.objects.filter(user=user).values("content_object_id"))
            | Q(pk__in=group_grants.objects.filter(group__user=user).values("content_object_id"))
        )
    limited = _token_model_ids(actor)
    if limited:
        queryset = queryset.filter(pk__in=limited)
    return queryset


def require_level(actor: Actor, model: RegisteredModel, level: Level) -> Level:
    """Check the actor may do something needing `level` on `model`.

    NotFound when it may not see the model at all (no existence oracle), PermissionDenied when
    it may see it but not do this.
    """
    return _require(actor, model.name, model_level(actor, model), level)


def require_level_named(actor: Actor, name: str, level: Level) -> int:
    """require_level for the model called `name`; returns its id (NotFound if there is none).

    For a signed-in user (not a superuser, levels not yet looked up in this request) the model's
    id, the user's registry-wide grants and their grants on the model come in one query: the
    write path's check, always fresh, at the cost of one round trip and no ORM compilation.
    """
    from registry.models import RegisteredModel

    user = actor.user
    if (
        actor.recent_permissions
        or user is None
        or not user.is_active
        or user.is_superuser
        or "registry_level" in actor.cache
    ):
        model_id = RegisteredModel.objects.filter(name=name).values_list("pk", flat=True).first()
        if model_id is None:
            raise NotFound(f"Registered Model with name={name} not found")
        require_level(actor, RegisteredModel(pk=model_id, name=name), level)
        return model_id
    found = None
    registry = granted = Level.NONE
    for model_id, codename, scope in _named_grants(user.pk, name):
        if scope == _SCOPE_MODEL:
            found = model_id
        elif codename in LEVEL_CODENAMES:
            if scope == _SCOPE_REGISTRY:
                registry = max(registry, Level.from_codename(codename))
            else:
                granted = max(granted, Level.from_codename(codename))
    if found is None:
        raise NotFound(f"Registered Model with name={name} not found")
    actor.cache["registry_level"] = registry
    limited = _token_model_ids(actor)
    have = Level.NONE if limited and found not in limited else max(registry, granted)
    if actor.token is not None and actor.token.read_only:
        have = min(have, Level.CAN_READ)
    _require(actor, name, have, level)
    return found


_SCOPE_MODEL, _SCOPE_REGISTRY, _SCOPE_GRANT = 0, 1, 2


def _named_grants(user_id: int, name: str) -> list[tuple[int | None, str | None, int]]:
    """(model id, None, 0) for the model called `name`, (None, codename, 1) per registry-wide
    permission of the user and their groups, (model id, codename, 2) per grant on the model to
    the user or their groups; one query (the ORM's equivalents are the other functions here)."""
    with prepared_cursor() as cursor:
        cursor.execute(_named_grants_sql(), {"name": name, "user": user_id, "app": "registry"})
        return cursor.fetchall()


@cache
def _named_grants_sql() -> str:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from registry.models import (
        RegisteredModel,
        RegisteredModelGroupGrant,
        RegisteredModelUserGrant,
    )

    q = connection.ops.quote_name
    user_model = get_user_model()
    models, perms, types = (q(m._meta.db_table) for m in (RegisteredModel, Permission, ContentType))
    user_grants, group_grants = (
        q(m._meta.db_table) for m in (RegisteredModelUserGrant, RegisteredModelGroupGrant)
    )
    user_perms = q(user_model.user_permissions.through._meta.db_table)  # type: ignore[attr-defined]
    user_groups = q(user_model.groups.through._meta.db_table)  # type: ignore[attr-defined]
    group_perms = q(Group.permissions.through._meta.db_table)
    # Every identifier quoted from the models' metadata, every value a parameter.
    return f"""
        SELECT m.id, NULL, {_SCOPE_MODEL} FROM {models} m WHERE m.name = %(name)s
        UNION ALL
        SELECT NULL, p.codename, {_SCOPE_REGISTRY} FROM {perms} p
            JOIN {types} t ON t.id = p.content_type_id
            JOIN {user_perms} up ON up.permission_id = p.id
            WHERE t.app_label = %(app)s AND up.user_id = %(user)s
        UNION ALL
        SELECT NULL, p.codename, {_SCOPE_REGISTRY} FROM {perms} p
            JOIN {types} t ON t.id = p.content_type_id
            JOIN {group_perms} gp ON gp.permission_id = p.id
            JOIN {user_groups} ug ON ug.group_id = gp.group_id
            WHERE t.app_label = %(app)s AND ug.user_id = %(user)s
        UNION ALL
        SELECT g.content_object_id, p.codename, {_SCOPE_GRANT} FROM {user_grants} g
            JOIN {perms} p ON p.id = g.permission_id
            JOIN {models} m ON m.id = g.content_object_id
            WHERE m.name = %(name)s AND g.user_id = %(user)s
        UNION ALL
        SELECT g.content_object_id, p.codename, {_SCOPE_GRANT} FROM {group_grants} g
            JOIN {perms} p ON p.id = g.permission_id
            JOIN {models} m ON m.id = g.content_object_id
            JOIN {user_groups} ug ON ug.group_id = g.group_id
            WHERE m.name = %(name)s AND ug.user_id = %(user)s
    """  # noqa: S608


def _require(actor: Actor, name: str, have: Level, level: Level) -> Level:
    """require_level's verdict on a level the actor has on the model called `name`."""
    if have < Level.CAN_READ:
        raise NotFound(f"Registered Model with name={name} not found")
    if have < level:
        if actor.token is not None and actor.token.read_only and level > Level.CAN_READ:
            raise PermissionDenied("This API token is read-only.")
        raise PermissionDenied(
            f"{level.name} on registered model '{name}' is needed for this; you have {have.name}."
        )
    return have


def require_writer(actor: Actor) -> None:
    """Refuse any write by a read-only token, even one a CAN_READ holder may make (a request,
    a comment)."""
    if actor.token is not None and actor.token.read_only:
        raise PermissionDenied("This API token is read-only.")


def transition_level(from_stage: str, to_stage: str) -> Level:
    """Moving into or out of Production needs the production level; the rest the staging one."""
    if "Production" in (from_stage, to_stage):
        return Level.CAN_MANAGE_PRODUCTION_VERSIONS
    return Level.CAN_MANAGE_STAGING_VERSIONS


def can_create_models(actor: Actor) -> bool:
    if actor.is_system:
        return True
    user = actor.user
    if user is None or not user.is_active:
        return False
    if actor.token is not None and (actor.token.read_only or actor.token.models.exists()):
        return False  # a read-only token writes nothing; a model-limited one only its models
    if user.is_superuser or settings.MODELGATE_ANY_USER_CAN_CREATE_MODELS:
        return True
    return user.has_perm(f"registry.{CREATE_MODELS_CODENAME}")


def require_create_models(actor: Actor) -> None:
    if not can_create_models(actor):
        if actor.token is not None:
            raise PermissionDenied("This API token may not create registered models.")
        raise PermissionDenied("You may not create registered models.")
