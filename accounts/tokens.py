"""Making, hashing and checking API tokens.

A token reads `mg_<prefix>_<secret>`: the `mg_` start lets secret scanners spot a leaked one, the
prefix identifies the row, and only HMAC-SHA256(pepper, token) is stored, compared in constant
time. The pepper comes from settings (MODELGATE_TOKEN_PEPPER), so a database dump alone cannot be
used to check guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.actors import Actor, Source
from accounts.audit import AccountEvent, account_event_record, token_snapshot
from accounts.models import ApiToken

TOKEN_START = "mg_"  # noqa: S105 -- the public start of every token, not a secret
_TOKEN_RE = re.compile(r"^mg_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(Exception):
    """Why a presented token is refused; the message is safe to show to the caller."""


def token_digest(token: str) -> str:
    return hmac.new(
        settings.MODELGATE_TOKEN_PEPPER.encode(), token.encode(), hashlib.sha256
    ).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_START)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the whole token string; shown once, never stored


@transaction.atomic
def token_create(
    *,
    user: Any,
    actor: Actor | None = None,
    name: str = "",
    read_only: bool = False,
    expires_in_days: int | None = None,
    expires_at: datetime | None = None,
    models: list[Any] | None = None,
) -> IssuedToken:
    """Issue a token for `user`; the returned secret is the only copy.

    `actor` is who issues it (by default the user, from the shell). The expiry is
    `expires_in_days` from now, or `expires_at`, or none.
    """
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    while True:
        prefix = "".join(secrets.choice(alphabet) for _ in range(8))
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    secret = f"{TOKEN_START}{prefix}_{secrets.token_urlsafe(32)}"
    if expires_in_days:
        expires_at = timezone.now() + timedelta(days=expires_in_days)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        digest=token_digest(secret),
        read_only=read_only,
        expires_at=expires_at,
    )
    if models:
        token.models.set(models)
    account_event_record(
        type=AccountEvent.TOKEN_CREATED,
        actor=actor or Actor(user=user, source=Source.SHELL),
        after=token_snapshot(token),
    )
    return IssuedToken(token=token, secret=secret)


def registered_models_named(names: list[str]) -> list[Any]:
    """The registered models a token is to be limited to.

    accounts sits below registry and does not import it; the model is looked up by label.
    """
    if not names:
        return []
    model_class = apps.get_model("registry", "RegisteredModel")
    return list(model_class.objects.filter(name__in=names))


@transaction.atomic
def token_update(
    *, token: ApiToken, actor: Actor, name: str, expires_at: datetime | None
) -> ApiToken:
    """Rename a token or change its expiry (its reach is fixed: issue another for that)."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    before = token_snapshot(token)
    token.name, token.expires_at = name, expires_at
    token.save(update_fields=["name", "expires_at"])
    after = token_snapshot(token)
    if after != before:
        account_event_record(
            type=AccountEvent.TOKEN_UPDATED, actor=actor, before=before, after=after
        )
    return token


@transaction.atomic
def token_revoke(*, token: ApiToken, actor: Actor | None = None) -> ApiToken:
    """Revoke a token (it stays listed); revoking a revoked one changes and records nothing.

    `actor` is who revokes it (by default its user, from the shell).
    """
    locked = ApiToken.objects.select_for_update().get(pk=token.pk)
    if locked.revoked_at is None:
        before = token_snapshot(locked)
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        account_event_record(
            type=AccountEvent.TOKEN_REVOKED,
            actor=actor or Actor(user=locked.user, source=Source.SHELL),
            before=before,
            after=token_snapshot(locked),
        )
    token.revoked_at = locked.revoked_at
    return token


def token_check(secret: str) -> ApiToken:
    """The live token behind `secret`, with its user; TokenError saying why otherwise."""
    match = _TOKEN_RE.match(secret)
    if match is None:
        raise TokenError("Malformed API token.")
    token = (
        ApiToken.objects.select_related("user")
        .prefetch_related("models")
        .filter(prefix=match.group(1))
        .first()
    )
    # Compare even when no row matched, so timing does not tell a known prefix from an unknown.
    expected = token.digest if token is not None else "0" * 64
    if not hmac.compare_digest(expected, token_digest(secret)) or token is None:
        raise TokenError("Invalid API token.")
    if token.is_revoked:
        raise TokenError("This API token has been revoked.")
    if token.is_expired:
        raise TokenError("This API token has expired.")
    if not token.user.is_active:
        raise TokenError("Invalid API token.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
