"""Changes to accounts (API tokens, users, groups) in the registry's history.

accounts sits below the registry and does not import it, so these events go through the recorder
that settings name (MODELGATE_EVENT_RECORDER: the registry's `event_record`), inside the change's
transaction like every other event. They belong to no model, so only auditors read them.
Snapshots hold who may do what, never a secret: no token digest, no password hash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models, transaction
from django.db.models import signals
from django.utils.module_loading import import_string

from accounts.actors import Actor
from accounts.models import ApiToken


class AccountEvent(models.TextChoices):
    # Event type names, not secrets (S105 reads "TOKEN" and "PASSWORD" as credentials).
    TOKEN_CREATED = "api_token.created"  # noqa: S105
    TOKEN_UPDATED = "api_token.updated"  # noqa: S105
    TOKEN_REVOKED = "api_token.revoked"  # noqa: S105
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105
    USER_DELETED = "user.deleted"
    GROUP_CREATED = "group.created"
    GROUP_UPDATED = "group.updated"
    GROUP_DELETED = "group.deleted"


def account_event_record(
    *,
    type: str,
    actor: Actor,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str = "",
) -> None:
    """Append an accounts event; must run inside the change's transaction."""
    record = import_string(settings.MODELGATE_EVENT_RECORDER)
    record(type=type, actor=actor, before=before, after=after, comment=comment)


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def _permissions(permissions: Any) -> list[str]:
    return sorted(
        f"{app}.{codename}"
        for app, codename in permissions.values_list("content_type__app_label", "codename")
    )


def token_snapshot(token: ApiToken) -> dict[str, Any]:
    return {
        "prefix": token.prefix,
        "name": token.name,
        "user": token.user.get_username(),
        "read_only": token.read_only,
        "models": sorted(model.name for model in token.models.all()),
        "expires_at": _time(token.expires_at),
        "revoked_at": _time(token.revoked_at),
    }


def user_snapshot(user: Any) -> dict[str, Any]:
    return {
        "username": user.get_username(),
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "permissions": _permissions(user.user_permissions),
    }


def group_snapshot(group: Group) -> dict[str, Any]:
    return {"name": group.name, "permissions": _permissions(group.permissions)}


@contextlib.contextmanager
def user_saves_recorded(actor: Actor, *, password: bool = False) -> Iterator[None]:
    """Record each user saved inside the block: `user.created` for a new one, else
    `user.password_changed` (with `password`) or `user.updated` when the snapshot changed.

    For Django's own doors that save users themselves: `createsuperuser`, `changepassword` and
    the admin's "change my password" page. The event is written in the save's transaction when
    there is one (the admin page runs in one); the commands save in autocommit, after their
    prompts (a transaction around those would hold SQLite's write lock while someone types), so
    there the event follows in a transaction of its own, right after the save.
    """
    user_model = get_user_model()
    stored: dict[Any, dict[str, Any]] = {}

    def remember(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
        if instance.pk is not None and not raw:
            found = user_model._default_manager.filter(pk=instance.pk).first()
            if found is not None:
                stored[instance.pk] = user_snapshot(found)

    def record(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
        if raw:
            return
        before = None if created else stored.pop(instance.pk, None)
        after = user_snapshot(instance)
        if created:
            kind = AccountEvent.USER_CREATED
        elif password:
            kind = AccountEvent.USER_PASSWORD_CHANGED
        elif after != before:
            kind = AccountEvent.USER_UPDATED
        else:
            return
        with transaction.atomic():
            account_event_record(type=kind, actor=actor, before=before, after=after)

    signals.pre_save.connect(remember, sender=user_model, weak=False)
    signals.post_save.connect(record, sender=user_model, weak=False)
    try:
        yield
    finally:
        signals.pre_save.disconnect(remember, sender=user_model)
        signals.post_save.disconnect(record, sender=user_model)
