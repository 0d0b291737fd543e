"""Answers of the MLflow read routes, kept per process until the registry changes.

Every change to the registry is a service call that appends an event and moves the event
chain's head in the change's own transaction, so the head (its sequence number and hash) names
a state of the registry. A read route renders its answer once and keeps the bytes under its
arguments, who asked, and the head it read *before* reading anything else (so the answer is at
least as new as that head). A later request that finds the same head gets those bytes after one
primary-key query instead of the route's reads and permission checks; the first request after
any change reads afresh. The hash is part of the key, so a log rebuilt to the same length (a
restored backup, a test's rolled-back transaction) never matches an older entry.

What the log may not record (a group's members, a username, a permission granted outside the
services) is bounded by the entries' lifetime, MODELGATE_POLL_AUTH_TTL seconds: the same trust
these reads already give credentials and permission levels (registry.mlflow.http). Only
successful answers are kept, each at most MAX_ANSWER_BYTES, MAX_ANSWERS of them per process.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from django.conf import settings

from accounts.actors import Actor
from config.localcache import LocalCache
from registry.models import EventChainHead

MAX_ANSWERS = 256
MAX_ANSWER_BYTES = 128 * 1024  # a search page of 100 models is about 63 KB

Answer = tuple[str, bytes]  # (ETag or "", body)

_answers: LocalCache[Answer] = LocalCache(MAX_ANSWERS, ttl=lambda: settings.MODELGATE_POLL_AUTH_TTL)


def _head() -> tuple[int, str] | None:
    return EventChainHead.objects.filter(pk=1).values_list("seq", "hash").first()


def answer(actor: Actor, key: tuple[Hashable, ...], compute: Callable[[], Answer]) -> Answer:
    """The answer of a read route for `key` (its name and arguments), from the cache when the
    registry has not changed since it was computed for the same caller, else `compute()`d.

    `compute` raises for errors (nothing is kept) and returns (ETag or "", body bytes).
    """
    head = _head()
    if head is None:  # no chain head row (a flushed test database): nothing to key on
        return compute()
    full_key = (key, actor.user_id, actor.token.pk if actor.token else None, head)
    found = _answers.get(full_key)
    if found is not None:
        return found
    computed = compute()
    if len(computed[1]) <= MAX_ANSWER_BYTES:
        _answers.put(full_key, computed)
    return computed


def clear() -> None:
    """Forget every kept answer (tests)."""
    _answers.clear()
