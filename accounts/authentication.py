"""Authentication the way the mlflow client and bots send it.

- `Authorization: Bearer <token>` (what MLFLOW_TRACKING_TOKEN sends);
- HTTP Basic with a username and either an API token or the password
  (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).

Django's password hashers are slow by design (hundreds of milliseconds), so a successful password
check is remembered in this process for a short while, keyed by a keyed hash of the credentials
and bound to the user's current password hash: changing the password, deactivating the user or
waiting out the TTL invalidates it. Failed attempts are counted per client address and, past a
limit, refused with 429 before any check.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.db import DEFAULT_DB_ALIAS
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, BasicAuthentication

from accounts.models import ApiToken
from accounts.throttling import WINDOW_SECONDS, auth_failure_note, auth_failures_exceeded
from accounts.tokens import TokenError, looks_like_token, token_check
from config.localcache import LocalCache
from config.sql import CompiledQuery

CACHE_TTL_SECONDS = 300
CACHE_MAX_ENTRIES = 10_000


class _VerifiedCredentials:
    """Credential digest → the password hash it was verified against, for CACHE_TTL_SECONDS.

    `single_flight(key)` serialises the slow check per credential, so a burst of requests with
    the same credentials on a cold process pays for one password hash, not one each.
    """

    _STRIPES = 64

    def __init__(self) -> None:
        self._verified: LocalCache[str] = LocalCache(CACHE_MAX_ENTRIES, ttl=CACHE_TTL_SECONDS)
        self._flights = [threading.Lock() for _ in range(self._STRIPES)]

    def single_flight(self, key: bytes) -> threading.Lock:
        return self._flights[key[0] % self._STRIPES]

    @staticmethod
    def digest(username: str, password: str) -> bytes:
        return hmac.new(
            settings.SECRET_KEY.encode(), f"{username}\x00{password}".encode(), hashlib.sha256
        ).digest()

    def matches(self, key: bytes, password_hash: str) -> bool:
        stored = self._verified.get(key)
        return stored is not None and hmac.compare_digest(stored, password_hash)

    def remember(self, key: bytes, password_hash: str) -> None:
        self._verified.put(key, password_hash)

    def clear(self) -> None:
        self._verified.clear()


verified_credentials = _VerifiedCredentials()


@cache
def _active_user_query() -> tuple[CompiledQuery, list[str]]:
    """The active user with a username, every field of it, compiled once (config.sql)."""
    user_model = get_user_model()
    fields = [field.attname for field in user_model._meta.concrete_fields]
    query = CompiledQuery(
        lambda username: (
            user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: username}, is_active=True
            )
            .values_list(*fields)
            .order_by("pk")[:1]
        ),
        username="\x00username\x00",
    )
    return query, fields


def active_user(username: str) -> Any:
    """The active user called `username` (as the manager's filter().first() would load it), or
    None; the query is compiled once, since every request with a password looks it up."""
    query, fields = _active_user_query()
    row = query.run(username=username)
    if row is None:
        return None
    return get_user_model().from_db(DEFAULT_DB_ALIAS, fields, row)


def _client_address(request: Any) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def _refuse(request: Any, message: str) -> exceptions.AuthenticationFailed:
    auth_failure_note(_client_address(request))
    return exceptions.AuthenticationFailed(message)


def _throttle(request: Any) -> None:
    if auth_failures_exceeded(_client_address(request)):
        raise exceptions.Throttled(
            wait=WINDOW_SECONDS, detail="Too many failed authentication attempts; try later."
        )


def _token_user(request: Any, secret: str, username: str | None = None) -> tuple[Any, ApiToken]:
    _throttle(request)
    try:
        token = token_check(secret)
    except TokenError as exc:
        raise _refuse(request, str(exc)) from None
    if username is not None and token.user.get_username() != username:
        raise _refuse(request, "Invalid API token.")
    return token.user, token


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer mg_…`."""

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        secret = secret.strip()
        if not secret:
            raise _refuse(request, "Empty bearer token.")
        return _token_user(request, secret)

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="modelgate"'


class CachedBasicAuthentication(BasicAuthentication):
    """Basic auth with a username and an API token or the password."""

    def authenticate_credentials(
        self, userid: str, password: str, request: Any = None
    ) -> tuple[Any, Any]:
        if looks_like_token(password):
            return _token_user(request, password, username=userid)
        _throttle(request)
        key = verified_credentials.digest(userid, password)
        user = active_user(userid)
        if user is not None and verified_credentials.matches(key, user.password):
            return user, None
        with verified_credentials.single_flight(key):
            # Another request may have verified the same credentials while this one waited.
            if user is not None and verified_credentials.matches(key, user.password):
                return user, None
            user = authenticate(request=request, username=userid, password=password)
            if user is None or not user.is_active:
                raise _refuse(request, "Invalid username or password.")
            verified_credentials.remember(key, user.password)
        return user, None
