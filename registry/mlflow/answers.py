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

Requests that miss the same key at the same time (many clients running the same search when the
registry changed or the entry expired) wait for one computation instead of each repeating it: it
started after they read the head, so its answer is at least as new as that head.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future

from django.conf import settings

from accounts.actors import Actor
from config.localcache import LocalCache
from config.sql import CompiledQuery
from registry.models import EventChainHead

MAX_ANSWERS = 256
MAX_ANSWER_BYTES = 128 * 1024  # a search page of 100 models is about 63 KB

Answer = tuple[str, bytes]  # (ETag or "", body)

_answers: LocalCache[Answer] = LocalCache(MAX_ANSWERS, ttl=lambda: settings.MODELGATE_POLL_AUTH_TTL)


_HEAD = CompiledQuery(
    lambda: EventChainHead.objects.filter(pk=1).values_list("seq", "hash").order_by("pk")[:1]
)
# Computations in progress by full key (see the module doc).
_computing: dict[Hashable, Future[Answer]] = {}
_computing_lock = threading.Lock()


def _head() -> tuple[int, str] | None:
    head = _HEAD.run()
    return None if head is None else (head[0], head[1])


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
    with _computing_lock:
        running = _computing.get(full_key)
        if running is None:
            running = _computing[full_key] = Future()
            mine = True
        else:
            mine = False
    if not mine:
        try:
            return running.result()
        except Exception:  # the computation failed for its caller; this one tries itself
            return compute()
    try:
        computed = compute()
        if len(computed[1]) <= MAX_ANSWER_BYTES:
            _answers.put(full_key, computed)
        running.set_result(computed)
    except BaseException as exc:
        running.set_exception(exc)
        raise
    finally:
        with _computing_lock:
            _computing.pop(full_key, None)
    return computed


def clear() -> None:
    """Forget every kept answer (tests)."""
    _answers.clear()
