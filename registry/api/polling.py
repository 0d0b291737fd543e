"""The alias read that deployment bots poll: ETag / 304, and long-polling with `?wait=N`.

It is an async view so that a request waiting for the alias to move holds no thread: hundreds
of bots can wait while other requests are served. Each check of the alias is one short trip to
a worker thread (authentication and one indexed query); a rendered answer is cached by its ETag,
which changes whenever the answer would, so a 200 costs no more queries than a 304.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
from registry import selectors
from registry.api.serializers import VersionOutSerializer
from registry.watch import watcher

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


class _BodyCache:
    """Rendered alias answers by ETag; an ETag names one exact answer, so entries never go stale."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, etag: str) -> bytes | None:
        with self._lock:
            body = self._entries.get(etag)
            if body is not None:
                self._entries.move_to_end(etag)
            return body

    def put(self, etag: str, body: bytes) -> None:
        with self._lock:
            self._entries[etag] = body
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_bodies = _BodyCache(_BODY_CACHE_SIZE)


@dataclass(frozen=True, slots=True)
class AliasAnswer:
    model_id: int
    etag: str
    body: bytes | None  # None when the caller already has this ETag


def _authenticate(request: HttpRequest) -> Actor:
    """Authenticate as the DRF views do; raises NotAuthenticated / AuthenticationFailed."""
    drf_request = Request(request, authenticators=[auth() for auth in _AUTHENTICATORS])
    if not drf_request.user.is_authenticated and not settings.MODELGATE_ANONYMOUS_READ:
        raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
    return Actor.from_request(drf_request)


def alias_read(*, actor: Actor, name: str, alias: str, known_etags: set[str]) -> AliasAnswer:
    """The alias's current answer; the body is left out when its ETag is in `known_etags`."""
    state = selectors.alias_state(actor=actor, model_name=name, alias=alias)
    if state is None:
        raise NotFound(f"Registered model alias {alias} not found on model {name}.")
    version_pk, version_updated, model_updated, model_id = state
    etag = alias_etag(version_pk, version_updated, model_updated)
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


def _release_connection() -> None:
    if not connection.in_atomic_block:  # never inside a test's wrapping transaction
        connection.close()


def if_none_match(request: HttpRequest) -> set[str]:
    header = request.headers.get("If-None-Match", "")
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
    # Thread-sensitive: the reads run on the request's own worker thread (and connection), which
    # Django closes when the request finishes; nothing is held while the request waits.
    actor, answer = await sync_to_async(_first_read)(
        request, name=name, alias=alias, known_etags=known
    )
    if answer.body is not None or wait == 0:
        return render(answer)
    # Hand the database connection back (to the pool on PostgreSQL) before waiting: hundreds of
    # waiting bots must not hold hundreds of connections.
    await sync_to_async(_release_connection)()
    waiter = watcher.register(answer.model_id)
    try:
        # Re-read after registering: a move committed before registration is seen here, one
        # committed after it wakes the waiter.
        read = sync_to_async(alias_read)
        answer = await read(actor=actor, name=name, alias=alias, known_etags=known)
        if answer.body is None:
            await sync_to_async(_release_connection)()
            if await watcher.wait(waiter, wait):
                answer = await read(actor=actor, name=name, alias=alias, known_etags=known)
    finally:
        watcher.unregister(answer.model_id, waiter)
    return render(answer)
