"""Throttling of failed authentication, per client address, in the shared cache.

The counters are a safeguard, not a source of truth: if the cache (Redis) is unreachable,
authentication goes on unthrottled rather than failing every request.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

WINDOW_SECONDS = 60
logger = logging.getLogger(__name__)


def _key(address: str) -> str:
    return f"modelgate:authfail:{address}"


def auth_failures_exceeded(address: str) -> bool:
    try:
        failures = int(cache.get(_key(address), 0))
    except Exception:
        logger.warning("auth throttle cache unavailable", exc_info=True)
        return False
    return failures >= settings.MODELGATE_AUTH_FAILURES_PER_MINUTE


def auth_failure_note(address: str) -> None:
    key = _key(address)
    try:
        if not cache.add(key, 1, timeout=WINDOW_SECONDS):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=WINDOW_SECONDS)
    except Exception:
        logger.warning("auth throttle cache unavailable", exc_info=True)
