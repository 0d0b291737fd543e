"""Throttling of failed authentication, per client address, in the shared cache.

The counters are a safeguard, not a source of truth: if the cache (Redis) is unreachable,
authentication goes on unthrottled rather than failing every request.
"""

from __future__ import annotations

import logging
from functools import cache as memoize
from typing import Any

from django.conf import settings
from django.core.cache import caches

WINDOW_SECONDS = 60
logger = logging.getLogger(__name__)


@memoize
def _counters() -> Any:
    """One cache client for the process. `django.core.cache.cache` is per request context under
    ASGI, so with Redis it opened a new connection for every request; this one keeps its pool."""
    return caches.create_connection("default")


def _key(address: str) -> str:
    return f"modelgate:authfail:{address}"


def auth_failures_exceeded(address: str) -> bool:
    try:
        failures = int(_counters().get(_key(address), 0))
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
