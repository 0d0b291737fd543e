"""Throttling in the shared cache: failed authentication per client address, and token
creation per user (TokenCreateThrottle).

The counters are a safeguard, not a source of truth: if the cache (Redis) is unreachable,
requests go on unthrottled rather than failing.
"""

from __future__ import annotations

import logging
from functools import cache as memoize
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import SimpleRateThrottle

WINDOW_SECONDS = 60
logger = logging.getLogger(__name__)


@memoize
def _counters() -> Any:
    """One cache client for the process. `django.core.cache.cache` is per request context under
    ASGI, so with Redis it opened a new connection for every request; this one keeps its pool."""
    return caches.create_connection("default")


@memoize
def _redis_reader(counters: RedisCache) -> Any:
    """One Redis client kept for reading `counters`' keys. The cache's own get builds a client
    object (and validates the key) on every call: a tenth of an authenticated API request."""
    return counters._cache.get_client(write=False)  # type: ignore[attr-defined]


def _key(address: str) -> str:
    return f"modelgate:authfail:{address}"


def _failures(address: str) -> int:
    """The failures counted for `address` in the current window."""
    counters = _counters()
    if not isinstance(counters, RedisCache):
        return int(counters.get(_key(address), 0))
    # The cache stores integers as plain Redis integers (it pickles only other values).
    value = _redis_reader(counters).get(counters.make_key(_key(address)))
    return 0 if value is None else int(value)


def auth_failures_exceeded(address: str) -> bool:
    try:
        failures = _failures(address)
    except Exception:
        logger.warning("auth throttle cache unavailable", exc_info=True)
        return False
    return failures >= settings.MODELGATE_AUTH_FAILURES_PER_MINUTE


def auth_failure_note(address: str) -> None:
    key = _key(address)
    try:
        if not _counters().add(key, 1, timeout=WINDOW_SECONDS):
            try:
                _counters().incr(key)
            except ValueError:  # expired between add and incr
                _counters().add(key, 1, timeout=WINDOW_SECONDS)
    except Exception:
        logger.warning("auth throttle cache unavailable", exc_info=True)


class TokenCreateThrottle(SimpleRateThrottle):
    """At most MODELGATE_TOKEN_CREATE_RATE token creations (POST) per user; other methods pass.

    Over the rate DRF answers 429 (`throttled`) with Retry-After. Every attempt counts, refused
    ones too, so a caller cannot probe without limit.
    """

    scope = "token_create"

    @property
    def cache(self) -> Any:  # type: ignore[override]
        return _counters()

    def get_rate(self) -> str | None:
        return settings.MODELGATE_TOKEN_CREATE_RATE or None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method != "POST" or not request.user.is_authenticated:
            return None
        return f"modelgate:throttle:{self.scope}:{request.user.pk}"

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("token throttle cache unavailable", exc_info=True)
            return True
