"""HTTP Basic authentication that does not pay for password hashing on every request.

The mlflow client sends Basic credentials with every call. Django's password hashers are slow by
design (hundreds of milliseconds), so a successful check is remembered in this process for a
short while, keyed by a keyed hash of the credentials and bound to the user's current password
hash: changing the password, deactivating the user or waiting out the TTL invalidates it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication

CACHE_TTL_SECONDS = 300
CACHE_MAX_ENTRIES = 10_000


class _VerifiedCredentials:
    """A small LRU of (credential digest → password hash it was verified against, expiry)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(username: str, password: str) -> bytes:
        return hmac.new(
            settings.SECRET_KEY.encode(), f"{username}\x00{password}".encode(), hashlib.sha256
        ).digest()

    def matches(self, key: bytes, password_hash: str) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            stored_hash, expires = entry
            if expires < time.monotonic():
                del self._entries[key]
                return False
            self._entries.move_to_end(key)
        return hmac.compare_digest(stored_hash, password_hash)

    def remember(self, key: bytes, password_hash: str) -> None:
        with self._lock:
            self._entries[key] = (password_hash, time.monotonic() + CACHE_TTL_SECONDS)
            self._entries.move_to_end(key)
            while len(self._entries) > CACHE_MAX_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_credentials = _VerifiedCredentials()


class CachedBasicAuthentication(BasicAuthentication):
    """Basic auth with a username and password, verified once per TTL per process."""

    def authenticate_credentials(
        self, userid: str, password: str, request: Any = None
    ) -> tuple[Any, None]:
        user_model = get_user_model()
        key = verified_credentials.digest(userid, password)
        user = user_model._default_manager.filter(
            **{user_model.USERNAME_FIELD: userid}, is_active=True
        ).first()
        if user is not None and verified_credentials.matches(key, user.password):
            return user, None
        user = authenticate(request=request, username=userid, password=password)
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("Invalid username or password.")
        verified_credentials.remember(key, user.password)
        return user, None
