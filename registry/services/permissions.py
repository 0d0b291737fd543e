"""Writes on the grants of a registered model; every change is an event."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from accounts.actors import Actor
from config.errors import InvalidParameter
from registry.choices import EventType
from registry.events import event_record
from registry.models import RegisteredModel, RegisteredModelGroupGrant, RegisteredModelUserGrant
from registry.permissions import Level


def _permission(level: Level) -> Permission:
    return Permission.objects.get(content_type__app_label="registry", codename=level.codename)


def permissions_of(model: RegisteredModel) -> dict[str, dict[str, str]]:
    """The model's direct grants as `{"users": {name: LEVEL}, "groups": {name: LEVEL}}`."""
    users = RegisteredModelUserGrant.objects.filter(content_object=model).values_list(
        "user__username", "permission__codename"
    )
    groups = RegisteredModelGroupGrant.objects.filter(content_object=model).values_list(
        "group__name", "permission__codename"
    )
    return {
        "users": {name: codename.upper() for name, codename in sorted(users)},
        "groups": {name: codename.upper() for name, codename in sorted(groups)},
    }


def _set_user_level(model: RegisteredModel, user: Any, level: Level | None) -> None:
    RegisteredModelUserGrant.objects.filter(content_object=model, user=user).delete()
    if level is not None:
        RegisteredModelUserGrant.objects.create(
            content_object=model, user=user, permission=_permission(level)
        )


def _set_group_level(model: RegisteredModel, group: Group, level: Level | None) -> None:
    RegisteredModelGroupGrant.objects.filter(content_object=model, group=group).delete()
    if level is not None:
        RegisteredModelGroupGrant.objects.create(
            content_object=model, group=group, permission=_permission(level)
        )


def creator_grant(*, model: RegisteredModel, actor: Actor) -> None:
    """Give the creator of a model its configured level on it (inside model_create)."""
    if actor.user is not None:
        _set_user_level(model, actor.user, Level.parse(settings.MODELGATE_CREATOR_LEVEL))


@transaction.atomic
def permissions_update(
    *,
    model: RegisteredModel,
    actor: Actor,
    users: dict[str, Level | None],
    groups: dict[str, Level | None],
    replace: bool = False,
) -> dict[str, dict[str, str]]:
    """Change a model's direct grants; `replace` drops every grant not named.

    A level of None removes that principal's grant. Unknown users or groups change nothing.
    """
    user_model = get_user_model()
    found_users = {u.get_username(): u for u in user_model.objects.filter(username__in=users)}
    found_groups = {g.name: g for g in Group.objects.filter(name__in=groups)}
    missing = sorted(set(users) - set(found_users)) + sorted(set(groups) - set(found_groups))
    if missing:
        raise InvalidParameter(
            f"No such user or group: {', '.join(missing)}.",
            fields={"access_control_list": [f"Unknown: {', '.join(missing)}."]},
        )
    model = RegisteredModel.objects.select_for_update().get(pk=model.pk)  # as model_lock
    before = permissions_of(model)
    if replace:
        RegisteredModelUserGrant.objects.filter(content_object=model).delete()
        RegisteredModelGroupGrant.objects.filter(content_object=model).delete()
    for name, level in users.items():
        _set_user_level(model, found_users[name], level)
    for name, level in groups.items():
        _set_group_level(model, found_groups[name], level)
    after = permissions_of(model)
    if after != before:
        event_record(
            type=EventType.MODEL_PERMISSIONS_UPDATED,
            actor=actor,
            model=model,
            before=before,
            after=after,
        )
    return after
