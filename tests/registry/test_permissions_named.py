"""require_level_named (the write path's one-query check) agrees with require_level."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.actors import Actor
from accounts.tokens import token_create
from config.errors import NotFound, PermissionDenied
from registry.permissions import Level, require_level, require_level_named
from registry.services import permissions_update
from tests.factories import make_model

pytestmark = pytest.mark.django_db

ROLES = (
    "no_grant",
    "user_edit",
    "group_manage",
    "registry_read",
    "registry_manage",
    "superuser",
    "inactive",
    "read_only_token",
    "token_for_other_model",
    "token_for_this_model",
)


def actor_for(role: str, django_user_model, model, other) -> Actor:
    user = django_user_model.objects.create_user(username=f"u-{role}", password="pw-123456789")
    system = Actor.system()
    if role == "user_edit":
        permissions_update(
            model=model, actor=system, users={user.username: Level.CAN_EDIT}, groups={}
        )
    elif role == "group_manage":
        Group.objects.create(name="risk").user_set.add(user)
        permissions_update(model=model, actor=system, users={}, groups={"risk": Level.CAN_MANAGE})
    elif role in ("registry_read", "registry_manage"):
        codename = "can_read" if role == "registry_read" else "can_manage"
        group = Group.objects.create(name="auditors")
        group.permissions.add(
            Permission.objects.get(content_type__app_label="registry", codename=codename)
        )
        group.user_set.add(user)
    elif role == "superuser":
        user.is_superuser = True
        user.save()
    elif role == "inactive":
        permissions_update(
            model=model, actor=system, users={user.username: Level.CAN_EDIT}, groups={}
        )
        user.is_active = False
        user.save()
    if role.endswith("token") or "token_for" in role:
        permissions_update(
            model=model, actor=system, users={user.username: Level.CAN_MANAGE}, groups={}
        )
        token = token_create(
            user=user,
            read_only=role == "read_only_token",
            models={"token_for_other_model": [other], "token_for_this_model": [model]}.get(role),
        ).token
        return Actor(user=user, token=token, token_prefix=token.prefix)
    return Actor(user=user)


def verdict(check) -> object:
    try:
        return check()
    except (NotFound, PermissionDenied) as exc:
        return type(exc), exc.message


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("level", [Level.CAN_READ, Level.CAN_EDIT, Level.CAN_MANAGE])
def test_the_named_check_agrees_with_require_level(role, level, django_user_model, actor):
    model = make_model(actor, "fraud")
    other = make_model(actor, "churn")

    named = verdict(
        lambda: require_level_named(
            actor_for(role, django_user_model, model, other), "fraud", level
        )
    )
    plain = verdict(lambda: require_level(_fresh(role), model, level))

    expected = model.pk if not isinstance(plain, tuple) else plain
    assert named == expected


def _fresh(role: str) -> Actor:
    """The same user and token as actor_for made, in a new actor (no memoised levels)."""
    user = get_user_model().objects.get(username=f"u-{role}")
    token = user.api_tokens.first()
    if token is not None:
        return Actor(user=user, token=token, token_prefix=token.prefix)
    return Actor(user=user)


def test_an_unknown_model_is_not_found(actor):
    make_model(actor, "fraud")

    with pytest.raises(NotFound):
        require_level_named(Actor(user=actor.user), "nope", Level.CAN_READ)


def test_the_named_check_is_one_query(actor, django_user_model):
    model = make_model(actor, "fraud")
    user = django_user_model.objects.create_user(username="ed", password="pw-123456789")
    permissions_update(model=model, actor=Actor.system(), users={"ed": Level.CAN_EDIT}, groups={})

    with CaptureQueriesContext(connection) as queries:
        assert require_level_named(Actor(user=user), "fraud", Level.CAN_EDIT) == model.pk

    assert len(queries) == 1
