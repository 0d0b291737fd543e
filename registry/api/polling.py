"""The alias read that deployment bots poll: ETag / 304, and long-polling with `?wait=N`.

It is an async view so that a request waiting for the alias to move holds no thread: hundreds
of bots can wait while other requests are served. A check of the alias is one short trip to a
worker thread; a rendered answer is cached by its ETag, which changes whenever the answer
would, so a 200 costs one query, the alias's state, as a 304 read from the database does.

Bots poll the same alias with the same credentials every few seconds, so the poll path keeps,
for MODELGATE_POLL_AUTH_TTL seconds (default 2), who a credential belongs to and the caller's
level on the model: a warm poll is one indexed query. A revoked token, a deactivated user or a
removed grant therefore stops working on this path within that time, not at once; every other
route checks afresh. The trips run on a small pool of reused threads with persistent database
connections (MODELGATE_POLL_THREADS).

Requests that reach this view through config.asgi's poll route (production: gunicorn with
uvicorn workers) may also be answered 304 from memory, with no thread and no query: when the
caller's credential and level are remembered as above, and the alias's current ETag is
remembered from an earlier read of the database that registry.watch has seen no change to
since. A move committed in any process is seen within MODELGATE_EVENT_WATCH_INTERVAL (0.2 s)
as a rule, and the memory is never trusted once the watcher is more than three intervals late;
until then a bot may get one more 304 for the answer before the move, as if it had polled a
moment earlier. A 200 always reads the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DataError, connection
from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings

from accounts.actors import Actor
from config.api import WWW_AUTHENTICATE, error_json
from config.errors import DomainError, InvalidParameter, NotFound
from config.localcache import LocalCache
from config.threads import LazyThreadPool
from registry import selectors
from registry.api.serializers import VersionOutSerializer
from registry.permissions import Level, recent_level
from registry.watch import Token, watcher

MAX_WAIT_SECONDS = 60
_BODY_CACHE_SIZE = 4096
_AUTHENTICATORS: list[Any] = list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
_DRF_CODES = {
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "permission_denied",
}


def alias_etag(version_pk: int, version_updated: object, model_updated: object) -> str:
    stamp = f"{version_updated.timestamp():.6f}-{model_updated.timestamp():.6f}"  # type: ignore[attr-defined]
    return f'"{version_pk}-{stamp}"'


# Rendered alias answers by ETag: an ETag names one exact answer, so entries never go stale.
_bodies: LocalCache[bytes] = LocalCache(_BODY_CACHE_SIZE)


# Who an Authorization header authenticated as, for a few seconds (see the module doc).
recent_auth: LocalCache[tuple[Any, Any]] = LocalCache(
    10_000, ttl=lambda: settings.MODELGATE_POLL_AUTH_TTL
)


@dataclass(frozen=True, slots=True)
class _Remembered:
    """An alias's answer as last read, valid while registry.watch gives its model this token."""

    etag: str
    model_id: int
    token: Token


# (model name, alias) → its answer as last read from the database (see the module doc).
remembered_aliases: LocalCache[_Remembered] = LocalCache(10_000)
_pool = LazyThreadPool(lambda: settings.MODELGATE_POLL_THREADS, "modelgate-poll")


def pool_close() -> None:
    """Close every pool thread's database connection and stop the pool (tests, shutdown)."""
    pool = _pool.take()
    if pool is None:
        return
    workers = pool._max_workers
    barrier = threading.Barrier(workers)

    def close_own() -> None:
        barrier.wait(timeout=10)  # one task per thread: each waits until all threads hold one
        connection.close()

    for future in [pool.submit(close_own) for _ in range(workers)]:
        future.result(timeout=15)
    pool.shutdown(wait=True)


async def _in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a database read off the event loop: on the reused pool when configured, else the way
    Django runs sync code (a thread per request, its connection closed when the request ends)."""
    if settings.MODELGATE_POLL_THREADS <= 0:
        return await sync_to_async(func)(*args, **kwargs)
    return await _pool.run(_pooled, func, *args, **kwargs)


in_thread = _in_thread  # for config.asgi's lean lane of the MLflow reads


def _pooled(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # The pool thread keeps its connection between calls; drop it only if it broke.
    if connection.errors_occurred:
        connection.errors_occurred = False
        if not connection.is_usable():
            connection.close()
    return func(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class AliasAnswer:
    model_id: int
    etag: str
    body: bytes | None  # None when the caller already has this ETag


def _authenticate(request: HttpRequest) -> Actor:
    """Authenticate as the DRF views do; raises NotAuthenticated / AuthenticationFailed."""
    header = request.headers.get("Authorization", "")
    key = hashlib.sha256(header.encode()).digest() if header else None
    remembered = recent_auth.get(key) if key is not None else None
    if remembered is not None:
        request.user, request.auth = remembered  # type: ignore[attr-defined]
        return Actor.from_request(request, recent_permissions=True)
    drf_request = Request(request, authenticators=[auth() for auth in _AUTHENTICATORS])
    if not drf_request.user.is_authenticated and not settings.MODELGATE_ANONYMOUS_READ:
        raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
    if key is not None and drf_request.user.is_authenticated:
        recent_auth.put(key, (drf_request.user, drf_request.auth))
    return Actor.from_request(drf_request, recent_permissions=True)


def alias_read(
    *, actor: Actor, name: str, alias: str, known_etags: set[str], remember: bool = False
) -> AliasAnswer:
    """The alias's current answer; the body is left out when its ETag is in `known_etags`.

    With `remember`, the answer's ETag is kept for answers from memory (see the module doc).
    """
    changes = watcher.changes  # before the read: a change processed during it voids the read
    state = selectors.alias_state(actor=actor, model_name=name, alias=alias)
    if state is None:
        raise NotFound(f"Registered model alias {alias} not found on model {name}.")
    version_pk, version_updated, model_updated, model_id = state
    etag = alias_etag(version_pk, version_updated, model_updated)
    if remember:
        watcher.touch()
        token = watcher.token_since(model_id, changes)
        if token is not None:
            remembered_aliases.put((name, alias), _Remembered(etag, model_id, token))
    if etag in known_etags:
        return AliasAnswer(model_id, etag, None)
    body = _bodies.get(etag)
    if body is None:
        version = selectors.version_list(actor=actor).get(pk=version_pk)
        body = JSONRenderer().render(VersionOutSerializer(version).data)
        _bodies.put(etag, body)
    return AliasAnswer(model_id, etag, body)


def _first_read(request: HttpRequest, **kwargs: Any) -> tuple[Actor, AliasAnswer]:
    actor = _authenticate(request)
    return actor, alias_read(actor=actor, **kwargs)


_MEMORY_ALLOWED = "_modelgate_poll_memory"


def allow_memory(request: HttpRequest) -> None:
    """Let this request be answered from memory: config.asgi marks the requests of its poll
    route, served where registry.watch runs; in-process test clients always read."""
    setattr(request, _MEMORY_ALLOWED, True)


def _memory_allowed(request: HttpRequest) -> bool:
    return getattr(request, _MEMORY_ALLOWED, False)


def _still_valid(entry: _Remembered) -> bool:
    return watcher.fresh() and watcher.token(entry.model_id) == entry.token


def _from_memory(
    request: HttpRequest, name: str, alias: str, known: set[str]
) -> tuple[Actor, AliasAnswer, _Remembered] | None:
    """A 304 without the database: the caller's credential and level and the alias's current
    ETag are all remembered, and the caller has that ETag. None: read the database."""
    entry = remembered_aliases.get((name, alias))
    if entry is None or entry.etag not in known:
        return None
    header = request.META.get("HTTP_AUTHORIZATION", "")
    remembered = recent_auth.get(hashlib.sha256(header.encode()).digest()) if header else None
    if remembered is None:
        return None
    request.user, request.auth = remembered  # type: ignore[attr-defined]
    actor = Actor.from_request(request, recent_permissions=True)
    level = recent_level(actor, entry.model_id)
    if level is None or level < Level.CAN_READ or not _still_valid(entry):
        return None
    watcher.touch()
    return actor, AliasAnswer(entry.model_id, entry.etag, None), entry


def _release_connection() -> None:
    if not connection.in_atomic_block:  # never inside a test's wrapping transaction
        connection.close()


async def _release_if_per_request() -> None:
    if settings.MODELGATE_POLL_THREADS <= 0:
        await sync_to_async(_release_connection)()


def if_none_match(request: HttpRequest) -> set[str]:
    header = request.META.get("HTTP_IF_NONE_MATCH", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def parse_wait(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise InvalidParameter(
            f"wait must be a number of seconds, got '{raw}'.", fields={"wait": ["Not a number."]}
        ) from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidParameter(
            f"wait must be between 0 and {MAX_WAIT_SECONDS} seconds.",
            fields={"wait": [f"Between 0 and {MAX_WAIT_SECONDS}."]},
        )
    return wait


def render(answer: AliasAnswer) -> HttpResponse:
    if answer.body is None:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(answer.body, content_type="application/json")
    response["ETag"] = answer.etag
    response["Cache-Control"] = "no-cache"
    return response


# Re-reads after a wake, shared by the waiters of one alias on one event loop: after a move,
# hundreds of bots waiting on the same alias cost one read, not one thread and query each.
# A waiting request was authorised when it arrived; the shared read does not re-check it.
_rereads: dict[tuple[int, str, str, Token], asyncio.Future[AliasAnswer]] = {}


async def _shared_reread(
    actor: Actor, name: str, alias: str, model_id: int, known: set[str], remember: bool
) -> AliasAnswer:
    key = (id(asyncio.get_running_loop()), name, alias, watcher.token(model_id))
    shared = _rereads.get(key)
    if shared is None:
        shared = asyncio.get_running_loop().create_future()
        _rereads[key] = shared
        try:
            fresh = await _in_thread(
                alias_read,
                actor=actor,
                name=name,
                alias=alias,
                known_etags=set(),
                remember=remember,
            )
        except BaseException as exc:
            shared.set_exception(exc)
            raise
        else:
            shared.set_result(fresh)
        finally:
            # Later waiters of this generation already hold the future; a later generation
            # reads afresh.
            asyncio.get_running_loop().call_later(1.0, _rereads.pop, key, None)
    fresh = await asyncio.shield(shared)
    if fresh.etag in known:
        return AliasAnswer(fresh.model_id, fresh.etag, None)
    return fresh


async def guarded(
    view: Callable[..., Awaitable[HttpResponse]], request: HttpRequest, *args: Any
) -> HttpResponse:
    """Render errors of an async (non-DRF) view in the API's error shape."""
    try:
        return await view(request, *args)
    except DomainError as exc:
        return error_json(exc.status, exc.code, exc.message, exc.fields)
    except DataError:  # PostgreSQL refuses NUL bytes in the name or alias
        return error_json(400, "invalid", "Names may not contain NUL characters.")
    except exceptions.APIException as exc:
        response = error_json(exc.status_code, _DRF_CODES.get(type(exc), "error"), str(exc.detail))
        if exc.status_code == 401:
            response["WWW-Authenticate"] = WWW_AUTHENTICATE
        return response


async def alias_poll(request: HttpRequest, name: str, alias: str) -> HttpResponse:
    """GET an alias: 200 with the version, or 304 when If-None-Match names the current answer.

    With `?wait=N` and a matching If-None-Match, the request is held until the alias's answer
    changes (200 with the new answer) or N seconds pass (304).
    """
    wait = parse_wait(request.GET.get("wait"))
    known = if_none_match(request)
    memory = _memory_allowed(request)
    recalled = _from_memory(request, name, alias, known) if memory else None
    if recalled is not None:
        actor, answer, entry = recalled
        if wait == 0:
            return render(answer)
    else:
        actor, answer = await _in_thread(
            _first_read, request, name=name, alias=alias, known_etags=known, remember=memory
        )
        if answer.body is not None or wait == 0:
            return render(answer)
    # Without the pool, hand the request thread's database connection back (to the pool on
    # PostgreSQL) before waiting: hundreds of waiting bots must not hold hundreds of connections.
    await _release_if_per_request()
    model_id = answer.model_id
    waiter = watcher.register(model_id)
    try:
        # Check again after registering: a move committed before registration is seen here, one
        # committed after it wakes the waiter. The memory still valid now is as good as a read:
        # any change it has not seen yet will wake the waiter when the watcher sees it.
        if recalled is None or not _still_valid(entry):
            answer = await _in_thread(
                alias_read,
                actor=actor,
                name=name,
                alias=alias,
                known_etags=known,
                remember=memory,
            )
        if answer.body is None:
            await _release_if_per_request()
            if await watcher.wait(waiter, wait):
                answer = await _shared_reread(actor, name, alias, model_id, known, memory)
    finally:
        watcher.unregister(model_id, waiter)
    return render(answer)
